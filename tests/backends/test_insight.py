"""What the dashboard reads beyond jobs: capped counts, completions per minute, the worker
list, and the change marker, on SQLite and PostgreSQL alike."""

from datetime import timedelta

from fastapi_equeue.backend import Backend, JobClaimParams, JobListParams
from fastapi_equeue.jobs import JobStatus
from tests.backends.conftest import MakeBackend
from tests.backends.factory import (
    job,
    outcome,
    registered,
    start_job,
    utcnow,
)


def claim_params(worker_id: str, queue: str) -> JobClaimParams:
    return JobClaimParams(worker_id=worker_id, queue=queue, limit=1)


async def test_count_follows_the_filters_and_stops_at_the_cap(backend: Backend) -> None:
    await backend.job_insert_many(
        [job(queue="a") for _ in range(5)] + [job(queue="b", job_type="other") for _ in range(3)]
    )

    assert await backend.job_count(JobListParams(limit=1), 100) == 8
    assert await backend.job_count(JobListParams(limit=1, queue="a"), 100) == 5
    assert await backend.job_count(JobListParams(limit=1, job_type="other"), 100) == 3
    assert await backend.job_count(JobListParams(limit=1, status=JobStatus.QUEUED), 100) == 8
    assert await backend.job_count(JobListParams(limit=1, status=JobStatus.FAILED), 100) == 0
    assert await backend.job_count(JobListParams(limit=1), 4) == 4
    assert await backend.job_count(JobListParams(limit=1, queue="a", job_type="other"), 9) == 0


async def test_throughput_counts_completed_and_failed_jobs_by_minute(backend: Backend) -> None:
    done = await start_job(backend)
    failed = await start_job(backend)
    cancelled_later = await start_job(backend)
    await backend.job_complete_many(
        [
            outcome(done, JobStatus.COMPLETED),
            outcome(failed, JobStatus.FAILED),
            outcome(cancelled_later, JobStatus.CANCELLED),
        ]
    )

    rows = await backend.job_throughput(utcnow() - timedelta(minutes=5))

    counts = {row.status: row.count for row in rows}
    assert counts == {JobStatus.COMPLETED: 1, JobStatus.FAILED: 1}
    for row in rows:
        assert row.minute.second == 0
        assert row.minute.microsecond == 0
        assert utcnow() - timedelta(minutes=2) < row.minute <= utcnow()
    assert await backend.job_throughput(utcnow() + timedelta(minutes=1)) == []


async def test_workers_are_listed_with_the_jobs_they_run(backend: Backend) -> None:
    busy = await registered(backend)
    idle = await registered(backend)
    await start_job(backend, worker_id=busy)
    await start_job(backend, worker_id=busy)

    workers = {w.id: w for w in await backend.worker_list()}

    assert set(workers) == {busy, idle}
    assert workers[busy].running == 2
    assert workers[idle].running == 0
    assert (workers[busy].hostname, workers[busy].pid) == ("test-host", 4242)
    assert workers[busy].queues == ("default",)
    assert abs(workers[busy].last_beat_at - utcnow()) < timedelta(seconds=5)


async def test_the_change_marker_moves_for_each_change_of_jobs_and_queues_by_anyone(
    make_backend: MakeBackend,
) -> None:
    reader = await make_backend()
    writer = await make_backend()
    last = await reader.change_marker()

    async def moved() -> None:
        nonlocal last
        now = await reader.change_marker()
        assert now != last
        last = now

    queued = (await writer.job_insert_many([job(queue="m")]))[0]
    await moved()
    (running,) = (await writer.job_claim(claim_params(await registered(writer), "m"))).jobs
    await moved()
    await writer.job_complete_many([outcome(running, JobStatus.FAILED)])
    await moved()
    assert await writer.job_retry(queued.id) is not None
    await moved()
    assert await writer.job_cancel(queued.id) is not None
    await moved()
    await writer.queue_pause("m", True)
    await moved()
    assert await writer.worker_heartbeat(running.worker_id or "")
    assert await reader.change_marker() == last  # a heartbeat is no change to show
