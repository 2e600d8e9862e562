"""Images made ready for a model: decoded, shrunk and preprocessed in a pool, in order, a bounded number at once.

The pool is the indexer's threads, or worker processes for a model whose whole cost is decoding (`pdq`: hashing
a 64 px thumbnail costs 0.13 ms, its decode 1-3 ms). Pillow releases Python's lock while it decodes and resizes,
but opening a file, parsing its chunks, PDQ's DCT and the glue between the C calls hold it; with hashes that is a
third of the work, so two threads on two cores did the work of 1.4. Each process has its own lock
(`worker_processes`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Generic, TypeVar

import numpy as np

from lookalike.errors import ImageError
from lookalike.images import load_image

Item = TypeVar("Item")

# Prepared (decoded, resized) images held at once, in batches: those being embedded and those waiting.
PREPARED_BATCHES = 4
# Fewer files than this are decoded in threads: forking the workers, which then copy the pages they write, and
# the pipes' round trips would cost more than they save.
PROCESSES_FROM = 256
# Files per task sent to a worker process.
WORKER_CHUNK = 8


@dataclass
class Prepared(Generic[Item]):
    key: Item
    array: np.ndarray | None = None
    size: tuple[int, int] = (0, 0)  # original width, height
    error: str | None = None


def prepare_image(embedder, key, image_input) -> Prepared:
    """One file made ready for `embedder`, or the reason it cannot be."""
    try:
        image = load_image(image_input, draft_size=embedder.draft_size)
        return Prepared(key, embedder.prepare(image), image.info["original_size"])
    except ImageError as exc:
        return Prepared(key, error=str(exc))
    except OSError as exc:  # a remote read that failed after its retries
        return Prepared(key, error=f"could not read: {exc}")
    except Exception as exc:  # a decoder bug on one odd file must not end the run
        return Prepared(key, error=f"could not decode: {type(exc).__name__}: {exc}")


def prepare_batches(pool: Executor, items: list, embedder, batch_size: int,
                    path_of: Callable = lambda item: item) -> Iterator[list[Prepared]]:
    """Decode and preprocess `items` in the pool, in order, `batch_size` at a time, ready for the model. A pool
    from `worker_processes` holds its own copy of the embedder."""
    window = max(1, PREPARED_BATCHES - concurrent_calls(embedder)) * batch_size
    prepared: Iterator[Prepared]
    if isinstance(pool, ProcessPoolExecutor):  # in chunks: a task's round trip costs the parent ≈ 0.1 ms
        chunks = (items[start:start + WORKER_CHUNK] for start in range(0, len(items), WORKER_CHUNK))
        work = ([(item, path_of(item)) for item in chunk] for chunk in chunks)
        prepared = chain.from_iterable(bounded_map(pool, _prepare_in_worker, work, window // WORKER_CHUNK + 1))
    else:
        prepared = bounded_map(pool, lambda item: prepare_image(embedder, item, path_of(item)), items, window)
    return ramped_batches(prepared, batch_size)


@contextmanager
def worker_processes(embedder, files: int, local: bool) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of processes (one per core) that prepare images for `embedder`, or None where threads are the
    right choice: an embedder that does not ask for processes (`prepare_in_processes`), few files, one core,
    files that are not local paths (a remote source's bytes would all be read by this process), or a process
    that runs other threads or cannot fork.

    The workers are forked, all at once, on entry: with no other thread running, no lock can be copied held
    (CPython's own rule for forking pools, issue 90622), and unlike `spawn` a fork does not import the caller's
    `__main__` again, so a script without an `if __name__ == "__main__"` guard does not run twice."""
    cores = os.cpu_count() or 1
    if (not getattr(embedder, "prepare_in_processes", False) or files < PROCESSES_FROM or cores < 2 or not local
            or threading.active_count() > 1 or "fork" not in multiprocessing.get_all_start_methods()
            or sys.platform == "darwin"):  # macOS: system frameworks are not safe to use after fork
        yield None
        return
    with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork"), initializer=_adopt,
                             initargs=(embedder,)) as pool:
        pool.submit(int).result()  # forks every worker now, before the caller starts its threads
        yield pool


_worker_embedder = None


def _adopt(embedder) -> None:
    global _worker_embedder
    _worker_embedder = embedder


def _prepare_in_worker(chunk: list[tuple]) -> list[Prepared]:
    return [prepare_image(_worker_embedder, key, image_input) for key, image_input in chunk]


def concurrent_calls(embedder) -> int:
    """How many model calls the embedder takes at once: 1, or more for one that runs each call on one core
    (lookalike.models.sscd: two single-threaded calls side by side did 16 % more images/s than one call on
    both cores, whose threads wait on each other and on the decoding threads)."""
    return max(1, int(getattr(embedder, "concurrent_calls", 1)))


def stack_prepared(arrays: list[np.ndarray]):
    """One array for the model, or the list itself when shapes differ (SSCD keeps each photo's aspect ratio and
    batches equal shapes itself)."""
    return np.stack(arrays) if len({a.shape for a in arrays}) == 1 else arrays


def bounded_map(pool: Executor, function, items: Iterable, window: int) -> Iterator:
    """Like pool.map, in order, but with at most `window` results in flight: memory stays flat at 1M images."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def ramped_batches(items: Iterator[Prepared], size: int) -> Iterator[list[Prepared]]:
    """Batches of `size`, after a ramp of smaller ones (8, 16, …): the model starts as soon as the first few
    images are decoded instead of idling until a full batch is ready (a sixth of the run for 64 photos)."""
    batch: list[Prepared] = []
    target = min(size, 8)
    for item in items:
        batch.append(item)
        if len(batch) == target:
            yield batch
            batch = []
            target = min(size, 2 * target)
    if batch:
        yield batch
