"""What the dashboard reads beyond jobs: capped counts, completions per minute, the worker
list, and the change marker, on SQLite and PostgreSQL alike."""

from datetime import timedelta

from fastapi_equeue.backend import Backend, JobListParams
from fastapi_equeue.jobs import JobStatus
from fastapi_equeue.testing import eventually
from tests.backends.conftest import MakeBackend
from tests.backends.factory import (
    DEADLINE,
    job,
    outcome,
    registered,
    start_job,
    utcnow,
)


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


async def test_the_change_marker_moves_when_another_connection_writes(
    make_backend: MakeBackend,
) -> None:
    reader = await make_backend()
    writer = await make_backend()
    before = await reader.change_marker()

    await writer.job_insert_many([job()])

    async def moved() -> bool:
        return await reader.change_marker() != before

    # PostgreSQL's statistics counters trail a write by up to a second or so.
    assert await eventually(moved, timeout=DEADLINE * 3)
