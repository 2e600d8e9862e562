"""lookalike.preparing: images made ready in threads or in forked worker processes, in order, with the same
result; processes only where they are safe and worth it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from lookalike import indexer, preparing
from lookalike.indexer import update_index
from lookalike.preparing import PROCESSES_FROM, prepare_batches, ramped_batches, worker_processes
from lookalike.store.catalog import Catalog

pytest.importorskip("pdqhash")


@pytest.fixture
def pdq():
    from lookalike.models.pdq import PdqEmbedder

    return PdqEmbedder()


@pytest.fixture
def lone_thread():
    """Forking needs this thread alone; a thread an earlier test left running would fail these tests."""
    assert threading.active_count() == 1, f"other threads are running: {[t.name for t in threading.enumerate()]}"


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_processes_only_for_many_local_files_of_an_embedder_that_asks(pdq, efficientnet, lone_thread):
    with worker_processes(pdq, PROCESSES_FROM, local=True) as pool:
        assert pool is not None and len(pool._processes) >= 2  # forked on entry, one per core
    for embedder, files, local in ((efficientnet, 10_000, True), (pdq, PROCESSES_FROM - 1, True),
                                   (pdq, 10_000, False)):
        with worker_processes(embedder, files, local) as pool:
            assert pool is None


def test_no_fork_while_another_thread_runs(pdq):
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with worker_processes(pdq, 10_000, local=True) as pool:
            assert pool is None
    finally:
        stop.set()
        other.join()


def test_processes_prepare_what_threads_prepare_in_the_same_order(pdq, sample_folder, tmp_path, lone_thread):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    files = [*_files(sample_folder), broken]
    with ThreadPoolExecutor(2) as threads:
        by_threads = [item for batch in prepare_batches(threads, files, pdq, batch_size=4) for item in batch]
    with worker_processes(pdq, 10_000, local=True) as processes:
        by_processes = [item for batch in prepare_batches(processes, files, pdq, batch_size=4) for item in batch]
    assert [item.key for item in by_processes] == files
    for mine, theirs in zip(by_processes, by_threads, strict=True):
        assert mine.size == theirs.size and mine.error == theirs.error
        assert mine.array is theirs.array is None or np.array_equal(mine.array, theirs.array)
    assert by_processes[-1].error and by_processes[-1].array is None


def test_an_index_built_in_processes_equals_one_built_in_threads(pdq, sample_folder, tmp_path, monkeypatch,
                                                                  lone_thread):
    in_threads = Catalog(tmp_path / "threads.db")
    update_index(in_threads, sample_folder, pdq)
    monkeypatch.setattr(preparing, "PROCESSES_FROM", 1)
    pools = []

    @contextmanager
    def recorded(*args):
        with worker_processes(*args) as pool:
            pools.append(pool)
            yield pool

    monkeypatch.setattr(indexer, "worker_processes", recorded)
    in_processes = Catalog(tmp_path / "processes.db")
    report = update_index(in_processes, sample_folder, pdq)
    assert pools and pools[0] is not None and report.embedded == len(_files(sample_folder))
    for path, row in in_threads.rows().items():
        assert np.array_equal(in_processes.vector_of(in_processes.rows()[path].id), in_threads.vector_of(row.id))


def test_batches_ramp_up_then_keep_their_size():
    assert [len(batch) for batch in ramped_batches(iter(range(70)), 16)] == [8, 16, 16, 16, 14]
