"""lookalike.preparing: images made ready in threads or in forked worker processes, in order, with the same
result; processes only where they are safe and worth it.

Forking needs the calling thread to be the process's only thread, and earlier tests leave library threads behind
(fsspec's IO loop, tqdm's monitor), so the tests that fork run in a fresh interpreter (`_alone`)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lookalike.preparing import PROCESSES_FROM, ramped_batches, worker_processes

pytest.importorskip("pdqhash")


def _alone(code: str, *args: str) -> dict:
    """Run `code` in a new Python (its only thread is the main one); it prints one JSON object last."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_processes_are_forked_on_entry_one_per_core_for_an_embedder_that_asks():
    found = _alone("""
        import json, os
        from lookalike.models.pdq import PdqEmbedder
        from lookalike.preparing import PROCESSES_FROM, worker_processes
        with worker_processes(PdqEmbedder(), PROCESSES_FROM, local=True) as pool:
            print(json.dumps({"pool": pool is not None, "processes": len(pool._processes) if pool else 0,
                              "cores": os.cpu_count()}))
    """)
    assert found["pool"] and found["processes"] == found["cores"] >= 2


def test_threads_for_few_files_remote_files_other_embedders_or_other_threads(efficientnet):
    from lookalike.models.pdq import PdqEmbedder

    for embedder, files, local in ((efficientnet, 10_000, True), (PdqEmbedder(), PROCESSES_FROM - 1, True),
                                   (PdqEmbedder(), 10_000, False)):
        with worker_processes(embedder, files, local) as pool:
            assert pool is None
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with worker_processes(PdqEmbedder(), 10_000, local=True) as pool:
            assert pool is None
    finally:
        stop.set()
        other.join()


def test_processes_prepare_what_threads_prepare_in_the_same_order(sample_folder, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    files = [*sorted(str(p) for p in Path(sample_folder).rglob("*") if p.is_file()), str(broken)]
    (tmp_path / "files.json").write_text(json.dumps(files))
    found = _alone("""
        import json, sys
        from concurrent.futures import ThreadPoolExecutor
        import numpy as np
        from lookalike.models.pdq import PdqEmbedder
        from lookalike.preparing import prepare_batches, worker_processes
        files, pdq = json.load(open(sys.argv[1])), PdqEmbedder()
        with worker_processes(pdq, 10_000, local=True) as processes:
            forked = [i for batch in prepare_batches(processes, files, pdq, batch_size=4) for i in batch]
        with ThreadPoolExecutor(2) as threads:
            threaded = [i for batch in prepare_batches(threads, files, pdq, batch_size=4) for i in batch]
        print(json.dumps({
            "pool": processes is not None, "order": [i.key for i in forked] == files,
            "same": all(a.size == b.size and a.error == b.error and (a.array is b.array is None
                        or np.array_equal(a.array, b.array)) for a, b in zip(forked, threaded, strict=True)),
            "last": forked[-1].error, "hashed": sum(i.array is not None for i in forked)}))
    """, str(tmp_path / "files.json"))
    assert found["pool"] and found["order"] and found["same"]
    assert found["last"] and found["hashed"] == len(files) - 1


def test_an_index_built_in_processes_equals_one_built_in_threads(sample_folder, tmp_path):
    found = _alone("""
        import json, sys
        import numpy as np
        from lookalike import preparing
        from lookalike.indexer import update_index
        from lookalike.models.pdq import PdqEmbedder
        from lookalike.store.catalog import Catalog
        folder, out = sys.argv[1], sys.argv[2]
        threads = Catalog(out + "/threads.db")
        update_index(threads, folder, PdqEmbedder())  # a few files: threads
        preparing.PROCESSES_FROM = 1
        used, real = [], preparing.worker_processes
        def recorded(*args):
            manager = real(*args)
            class Recorded:
                def __enter__(self):
                    pool = manager.__enter__()
                    used.append(pool is not None)
                    return pool
                def __exit__(self, *exc):
                    return manager.__exit__(*exc)
            return Recorded()
        import lookalike.indexer
        lookalike.indexer.worker_processes = recorded
        processes = Catalog(out + "/processes.db")
        report = update_index(processes, folder, PdqEmbedder())
        rows = processes.rows()
        print(json.dumps({"forked": used, "embedded": report.embedded, "equal": all(
            np.array_equal(processes.vector_of(rows[path].id), threads.vector_of(row.id))
            for path, row in threads.rows().items())}))
    """, str(sample_folder), str(tmp_path))
    assert found["forked"] == [True] and found["equal"]
    assert found["embedded"] == sum(1 for path in Path(sample_folder).rglob("*") if path.is_file())


def test_batches_ramp_up_then_keep_their_size():
    assert [len(batch) for batch in ramped_batches(iter(range(70)), 16)] == [8, 16, 16, 16, 14]
