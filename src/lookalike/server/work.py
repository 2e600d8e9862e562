"""Where the server's CPU work runs: a bounded worker pool, and background jobs for long operations.

Decoding and embedding an upload took the event loop with it: under 50 upload clients /api/health answered
in 1.4 s (p50) and uploads ran one at a time. Now every route hands its work to a pool of a few threads (the
event loop only parses requests and answers), and when the pool's queue is full a request is told to come back
(503 + Retry-After) instead of piling up. Operations that can take minutes (duplicates with local-feature
verification) run as jobs with their own catalog connection, so they never hold the server's lock; the page
polls their progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from lookalike.models.base import Embedder
from lookalike.server.safety import RequestRejected

Progress = Callable[..., None]  # progress(done, total[, what])


class JobCancelled(Exception):
    """Raised by a job's progress callback once a cancel was asked (the job stops at its next report); a job
    may raise it itself with `result`, what it did before stopping (e.g. the moves an undo can put back)."""

    def __init__(self, result: object = None) -> None:
        super().__init__("cancelled")
        self.result = result


class Reporter:
    """What a job's work receives: call it with (done, total[, what]) to report progress, which raises
    JobCancelled once the job was asked to stop (cooperative cancel); `report` only reports, and `cancelled`
    says whether to stop, for work that must stop at a point of its own choosing (between two file moves)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    @property
    def cancelled(self) -> bool:
        return self.job.cancel_requested

    def report(self, done: int, total: int | None, what: str | None = None) -> None:
        self.job.done, self.job.total = done, total
        if what is not None:
            self.job.phase = what

    def __call__(self, done: int, total: int | None, what: str | None = None) -> None:
        self.report(done, total, what)
        if self.cancelled:
            raise JobCancelled


# Measured with efficientnet-lite0 (ONNX fp32, pre-packed) on this 2-core machine, CPU time per image: 11 ms in
# batches of 1-4, 13 ms in batches of 8, 16 ms in batches of 16, so batches stay small. Two model threads side by
# side ran more images/s alone, but in the server (load average 11-16) they starved the event loop: /api/health
# p50 51-134 ms under 50 upload clients vs 14 ms with one model call at a time, and fewer uploads/s.
MAX_BATCH = 4  # inputs per model call at most
MODEL_STREAMS = 1  # model calls that may run side by side


# Worker, model and job threads run at a lower priority than the event loop (on Linux nice is per thread): the
# loop only parses requests and answers, so under 50 upload clients it gets a core as soon as it has work.
BACKGROUND_NICENESS = 5


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> None:
    """Make the calling thread (and threads it starts) `niceness` steps nicer; Linux only, where a thread id
    names one thread (elsewhere setpriority would take the whole process down with it)."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox may forbid it: the server still works, at equal priority
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))


def default_workers() -> int:
    """Two per core: decoding releases the GIL, and all of them may wait in one model batch (MAX_BATCH). Four
    more workers (for more waiting rows) let more decodes run at once and slowed /api/health under 50 upload
    clients (p99 174-508 ms vs 55 ms with these, same machine load)."""
    return max(2, min(8, 2 * (os.cpu_count() or 2)))


class WorkerPool:
    """`await pool.run(fn, *args)`: fn runs in one of `workers` threads; beyond `workers + queue` requests
    in flight, RequestRejected(503) with a Retry-After."""

    def __init__(self, workers: int | None = None, queue: int = 64) -> None:
        self.workers = workers or default_workers()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="lookalike-work",
                                            initializer=lower_thread_priority)
        self._slots = threading.BoundedSemaphore(self.workers + queue)

    async def run(self, function: Callable, *args):
        if not self._slots.acquire(blocking=False):
            raise RequestRejected(503, "the server is busy; retry shortly", retry_after=1)
        try:
            future = self._executor.submit(function, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())  # freed when the work ends, not the request
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ModelBatcher:
    """Dynamic micro-batching: callers queue a prepared model input and wait for their row; each of `streams`
    model threads takes everything waiting (up to `max_batch`, with no added wait when the queue is empty) and
    runs it as one batch. A batch holds one of the `turn` slots, and so does any other model call (text), so no
    more than `streams` model calls ever run at once (8 side by side oversubscribed the cores)."""

    def __init__(self, embed_prepared: Callable[[np.ndarray], np.ndarray], max_batch: int = MAX_BATCH,
                 streams: int = MODEL_STREAMS) -> None:
        self.turn = threading.BoundedSemaphore(streams)
        self.max_batch, self.streams = max_batch, streams
        self._embed = embed_prepared
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def submit(self, prepared: np.ndarray) -> Future:
        """A future for `prepared`'s embedding row."""
        future: Future = Future()
        self._queue.put((prepared, future))
        with self._start_lock:
            while len(self._threads) < self.streams:
                self._threads.append(threading.Thread(target=self._serve, name="lookalike-model", daemon=True))
                self._threads[-1].start()
        return future

    def _serve(self) -> None:
        lower_thread_priority()
        while True:
            waiting = [self._queue.get()]
            while len(waiting) < self.max_batch:
                try:
                    waiting.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stops = waiting.count(None)
            self._run([item for item in waiting if item is not None])
            if stops:
                for _ in range(stops - 1):  # another thread's
                    self._queue.put(None)
                return

    def _run(self, waiting: list[tuple[np.ndarray, Future]]) -> None:
        by_shape: dict[tuple, list[tuple[np.ndarray, Future]]] = {}
        for item in waiting:
            by_shape.setdefault(item[0].shape, []).append(item)
        for items in by_shape.values():
            try:
                with self.turn:
                    rows = self._embed(np.stack([prepared for prepared, _ in items]))
            except BaseException as exc:  # every caller of the batch hears why
                for _, future in items:
                    future.set_exception(exc)
                continue
            for (_, future), row in zip(items, rows, strict=True):
                future.set_result(row)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


class BatchedEmbedder:
    """The index's embedder as the server uses it: images go through the batcher (prepared in the calling
    thread), every other model call takes the batcher's turn; everything else is the embedder's own."""

    def __init__(self, embedder: Embedder, batcher: ModelBatcher | None = None) -> None:
        self._embedder = embedder
        self.batcher = batcher or ModelBatcher(embedder.embed_prepared)
        self.id, self.dim, self.modalities = embedder.id, embedder.dim, embedder.modalities
        self.draft_size = embedder.draft_size
        self.prepare, self.preprocessing = embedder.prepare, embedder.preprocessing

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([future.result() for future in [self.batcher.submit(row) for row in batch]])

    def embed_images(self, images: list) -> np.ndarray:
        futures = [self.batcher.submit(self._embedder.prepare(image)) for image in images]
        if not futures:
            return np.zeros((0, self._embedder.dim), np.float32)
        return np.stack([future.result() for future in futures])

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        with self.batcher.turn:
            return self._embedder.embed_texts(texts)


@dataclass
class Job:
    id: str
    kind: str
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: object = None
    error: str | None = None
    key: object = None
    phase: str | None = None  # what the progress counts ("verifying pairs")
    cancel_requested: bool = False

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "progress": {"done": self.done, "total": self.total, "what": self.phase},
                "cancel_requested": self.cancel_requested,
                "elapsed_s": round((self.finished_at or time.time()) - self.created_at, 2),
                "result": self.result, "error": self.error, "url": f"/api/jobs/{self.id}"}


class Jobs:
    """Background jobs, one at a time (they are CPU-bound), the last `keep` remembered."""

    def __init__(self, keep: int = 20, queue: int = 4) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lookalike-job", initializer=lower_thread_priority)
        self._jobs: dict[str, Job] = {}
        self._keep, self._queue = keep, queue
        self._lock = threading.Lock()

    def start(self, kind: str, work: Callable[[Progress], object], key: object = None) -> Job:
        """A new job, or the unfinished one started with the same `key` (a second click joins the first)."""
        with self._lock:
            for job in self._jobs.values():
                if key is not None and job.key == key and job.status in ("queued", "running"):
                    return job
            waiting = sum(job.status in ("queued", "running") for job in self._jobs.values())
            if waiting >= self._queue:
                raise RequestRejected(503, f"{waiting} jobs are already waiting; retry later", retry_after=10)
            job = Job(uuid.uuid4().hex, kind, key=key)
            self._jobs[job.id] = job
            for old in list(self._jobs)[:-self._keep]:
                if self._jobs[old].status in ("done", "failed", "cancelled"):
                    del self._jobs[old]
        self._executor.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Progress], object]) -> None:
        with self._lock:
            if job.status == "cancelled":  # cancelled while queued
                return
            job.status = "running"
        try:
            job.result = work(Reporter(job))
            job.status = "done"
        except JobCancelled as stop:
            job.result, job.status = stop.result, "cancelled"
        except Exception as exc:  # reported to whoever polls the job
            job.error, job.status = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            job.finished_at = time.time()

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued one never starts, a running one stops at its next progress report; a
        finished one is left as it is (the answer says which)."""
        job = self.get(job_id)
        with self._lock:
            if job.status == "queued":
                job.status, job.finished_at = "cancelled", time.time()
            if job.status in ("queued", "running", "cancelled"):
                job.cancel_requested = True
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise RequestRejected(404, f"no job {job_id} (jobs are forgotten after a while, or at a restart)")
        return job

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
