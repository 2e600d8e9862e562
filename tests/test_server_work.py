"""The worker pool answers 503 + Retry-After when full; concurrent model inputs are run as one batch whose rows
equal single-image embeddings; jobs run in the background with a status to poll."""

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lookalike.server.safety import RequestRejected
from lookalike.server.work import BatchedEmbedder, JobCancelled, Jobs, ModelBatcher, WorkerPool


def test_a_full_pool_answers_503_with_retry_after():
    pool = WorkerPool(workers=1, queue=1)
    release = threading.Event()

    async def main():
        running = [asyncio.ensure_future(pool.run(release.wait)) for _ in range(2)]  # one runs, one queued
        await asyncio.sleep(0.05)
        with pytest.raises(RequestRejected) as caught:
            await pool.run(time.sleep, 0)
        release.set()
        await asyncio.gather(*running)
        return caught.value, await pool.run(lambda: 42)

    refused, later = asyncio.run(main())
    assert refused.status == 503 and refused.retry_after and later == 42
    pool.shutdown()


def test_jobs_report_progress_result_and_failure():
    jobs = Jobs()
    gate = threading.Event()

    def work(progress):
        progress(1, 2)
        gate.wait(10)
        progress(2, 2)
        return {"groups": []}

    job = jobs.start("dupes", work)
    deadline = time.time() + 10
    while jobs.get(job.id).as_dict()["progress"]["done"] != 1 and time.time() < deadline:
        time.sleep(0.01)
    assert jobs.get(job.id).as_dict()["status"] == "running"
    gate.set()
    while jobs.get(job.id).status == "running" and time.time() < deadline:
        time.sleep(0.01)
    assert jobs.get(job.id).as_dict()["result"] == {"groups": []}
    failed = jobs.start("dupes", lambda progress: 1 / 0)
    while jobs.get(failed.id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.01)
    assert jobs.get(failed.id).status == "failed" and "ZeroDivisionError" in jobs.get(failed.id).error
    with pytest.raises(RequestRejected) as caught:
        jobs.get("0" * 32)
    assert caught.value.status == 404
    jobs.shutdown()


def _settled(jobs, job_id, deadline):
    while jobs.get(job_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.01)
    return jobs.get(job_id).as_dict()


def test_cancel_stops_a_running_job_at_its_next_report_and_a_queued_one_before_it_starts():
    jobs = Jobs()
    started, gate, ran = threading.Event(), threading.Event(), []

    def work(progress):
        for done in range(1, 1000):
            progress(done, 999, "verifying pairs")  # raises JobCancelled once cancelled
            started.set()
            gate.wait(10)
        return "finished"

    running = jobs.start("dupes", work)
    queued = jobs.start("apply", lambda progress: ran.append(1))
    assert started.wait(10)
    assert jobs.cancel(queued.id).as_dict()["status"] == "cancelled"
    answer = jobs.cancel(running.id).as_dict()
    assert answer["status"] == "running" and answer["cancel_requested"]
    gate.set()
    deadline = time.time() + 10
    finished = _settled(jobs, running.id, deadline)
    assert finished["status"] == "cancelled" and finished["result"] is None
    assert finished["progress"] == {"done": 2, "total": 999, "what": "verifying pairs"}
    time.sleep(0.1)
    assert ran == [] and jobs.get(queued.id).status == "cancelled"  # never started
    done = jobs.start("undo", lambda progress: "ok")
    assert _settled(jobs, done.id, deadline)["status"] == "done"
    assert jobs.cancel(done.id).as_dict()["status"] == "done"  # a finished job is left as it was
    jobs.shutdown()


def test_work_that_stops_itself_reports_what_it_did():
    jobs = Jobs()

    def work(progress):
        progress.report(1, 3, "moving files")  # report only: never raises
        jobs.cancel(progress.job.id)
        assert progress.cancelled
        raise JobCancelled({"moved": 1})

    job = jobs.start("apply", work)
    finished = _settled(jobs, job.id, time.time() + 10)
    assert finished["status"] == "cancelled" and finished["result"] == {"moved": 1}
    jobs.shutdown()


@pytest.mark.slow
def test_requests_waiting_together_run_as_one_batch_with_the_single_image_vectors(efficientnet, photos):
    images = [photo.resize((320, 240)) for photo in list(photos.values())[:12]]
    single = np.stack([efficientnet.embed_images([image])[0] for image in images])
    gate = threading.Event()
    calls: list[int] = []

    def embed_prepared(batch):  # the first call waits until every other request is queued behind it
        calls.append(len(batch))
        if len(calls) == 1:
            gate.wait(10)
        return efficientnet.embed_prepared(batch)

    batcher = ModelBatcher(embed_prepared, max_batch=8, streams=1)
    model = BatchedEmbedder(efficientnet, batcher)
    with ThreadPoolExecutor(len(images)) as threads:
        first = threads.submit(model.embed_images, images[:1])
        while not calls:
            time.sleep(0.001)
        rest = [threads.submit(model.embed_images, [image]) for image in images[1:]]
        while batcher._queue.qsize() < len(images) - 1:
            time.sleep(0.001)
        gate.set()
        batched = np.stack([first.result()[0], *(future.result()[0] for future in rest)])
    assert calls == [1, 8, 3]  # everything waiting, up to max_batch, and no waiting for more
    cosines = np.sum(batched * single, axis=1) / np.linalg.norm(batched, axis=1) / np.linalg.norm(single, axis=1)
    assert cosines.min() >= 0.9999
    batcher.shutdown()


def test_two_model_streams_run_batches_side_by_side_and_text_takes_a_turn():
    both_inside = threading.Barrier(2, timeout=10)

    def embed_prepared(batch):  # returns only once the other stream is inside too
        both_inside.wait()
        return batch * 2

    batcher = ModelBatcher(embed_prepared, max_batch=1, streams=2)
    futures = [batcher.submit(np.full(3, n, np.float32)) for n in range(4)]
    assert sorted(float(f.result(10)[0]) for f in futures) == [0, 2, 4, 6]
    with batcher.turn, batcher.turn:  # both slots taken: no third model call can start
        assert not batcher.turn.acquire(blocking=False)
    batcher.shutdown()


def test_a_failing_batch_tells_every_caller():
    def broken(batch):
        raise ValueError(f"cannot embed {len(batch)}")

    batcher = ModelBatcher(broken)
    futures = [batcher.submit(np.zeros(3, np.float32)) for _ in range(3)]
    for future in futures:
        with pytest.raises(ValueError, match="cannot embed"):
            future.result(10)
    assert batcher.submit(np.zeros(3, np.float32)).exception(10) is not None  # the model thread lives on
    batcher.shutdown()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_pool_threads_run_nicer_than_the_event_loop_thread():
    import os

    from lookalike.server.work import BACKGROUND_NICENESS

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    loop_thread = niceness()
    pool = WorkerPool(workers=1)
    try:
        worker = asyncio.run(pool.run(niceness))
    finally:
        pool.shutdown()
    assert worker == min(19, loop_thread + BACKGROUND_NICENESS)
    assert niceness() == loop_thread
