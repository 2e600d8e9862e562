"""The worker pool answers 503 + Retry-After when full; jobs run in the background with a status to poll."""

import asyncio
import threading
import time

import pytest

from lookalike.server.safety import RequestRejected
from lookalike.server.work import JobCancelled, Jobs, WorkerPool


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
