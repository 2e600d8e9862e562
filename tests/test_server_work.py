"""The worker pool answers 503 + Retry-After when full; jobs run in the background with a status to poll."""

import asyncio
import threading
import time

import pytest

from lookalike.server.safety import RequestRejected
from lookalike.server.work import Jobs, WorkerPool


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
