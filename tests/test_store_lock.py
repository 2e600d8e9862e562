"""One writer per index: a second update waits, says who holds the lock, then embeds nothing twice."""

import os
import threading
import time

import pytest

import lookalike
from lookalike.store.lock import IndexBusyError, lock_path, writer_lock


def test_a_second_writer_is_told_who_holds_the_lock(tmp_path):
    db = tmp_path / "index.db"
    with writer_lock(db):
        assert f"pid {os.getpid()}" in lock_path(db).read_text()
        with pytest.raises(IndexBusyError, match=f"pid {os.getpid()}"), writer_lock(db, wait=False):
            pass
    with writer_lock(db, wait=False):  # released on exit
        pass


@pytest.mark.slow
def test_a_second_update_waits_then_embeds_nothing_twice(sample_folder, counting):
    """Fault 8: two `lookalike index` runs at once both embedded (148 of 300 images twice)."""
    first, second = lookalike.open(sample_folder, model="efficientnet-lite0"), lookalike.open(sample_folder)
    first._embedder = second._embedder = counting
    waited: list[str] = []
    reports = {}
    started = threading.Event()

    def run(name, idx, **kwargs):
        reports[name] = idx.update(batch_size=4, progress=lambda done, total: started.set(), **kwargs)

    a = threading.Thread(target=run, args=("first", first))
    a.start()
    started.wait(60)
    time.sleep(0.2)
    b = threading.Thread(target=run, args=("second", second), kwargs={"on_wait": waited.append})
    b.start()
    a.join(120)
    b.join(120)
    assert waited and f"pid {os.getpid()}" in waited[0]
    assert reports["first"].added == 31 and reports["second"].added == 0 and reports["second"].unchanged == 31
    assert counting.images_embedded == 31
    first.close()
    second.close()
