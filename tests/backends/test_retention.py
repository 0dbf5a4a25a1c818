"""Retention on both backends: ``job_prune`` deletes finished jobs past their retention, in
batches, and frees their idempotency keys; on PostgreSQL it reads its index on a large table.

Time is a ``ManualClock`` (on PostgreSQL too: its statements take the clock's time), so a
retention of days is crossed by moving the clock.
"""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import Backend, JobPruneParams
from fastapi_equeue.backends import normalise_url
from fastapi_equeue.backends._queries import load_queries
from fastapi_equeue.clock import ManualClock
from fastapi_equeue.jobs import JobStatus
from tests.backends.conftest import MakeBackend
from tests.backends.factory import error_for, get, insert_one, job, outcome, start_job

START = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1).total_seconds()


async def finish(backend: Backend, status: str, **overrides: object) -> str:
    """A job that ended in ``status`` now; its id."""
    row = await start_job(backend, **overrides)
    if status == "completed":
        await backend.job_complete_many([outcome(row, "completed", result=1)])
    elif status == "failed":
        await backend.job_complete_many([outcome(row, "failed", error=error_for(1))])
    else:
        await backend.job_complete_many([outcome(row, "cancelled")])
    return row.id


async def remaining(backend: Backend, *ids: str) -> set[str]:
    return {job_id for job_id in ids if await backend.job_get(job_id) is not None}


async def test_finished_jobs_go_once_past_their_retention(make_backend: MakeBackend) -> None:
    clock = ManualClock(START)
    backend = await make_backend(clock)
    completed = await finish(backend, "completed")
    cancelled = await finish(backend, "cancelled")
    failed = await finish(backend, "failed")
    waiting = (await insert_one(backend)).id
    params = JobPruneParams(retention=7 * DAY, failed_retention=30 * DAY, limit=100)

    clock.advance(timedelta(days=7) - timedelta(seconds=1))
    assert await backend.job_prune(params) == {}

    clock.advance(timedelta(seconds=2))
    assert await backend.job_prune(params) == {JobStatus.COMPLETED: 1, JobStatus.CANCELLED: 1}
    assert await remaining(backend, completed, cancelled, failed, waiting) == {failed, waiting}

    clock.advance(timedelta(days=23))
    assert await backend.job_prune(params) == {JobStatus.FAILED: 1}
    assert await remaining(backend, failed, waiting) == {waiting}


async def test_no_retention_keeps_jobs_forever(make_backend: MakeBackend) -> None:
    clock = ManualClock(START)
    backend = await make_backend(clock)
    completed = await finish(backend, "completed")
    failed = await finish(backend, "failed")
    clock.advance(timedelta(days=3650))

    counts = await backend.job_prune(
        JobPruneParams(retention=None, failed_retention=None, limit=100)
    )

    assert counts == {}
    assert await remaining(backend, completed, failed) == {completed, failed}


async def test_a_prune_deletes_at_most_its_batch_of_each_retention(
    make_backend: MakeBackend,
) -> None:
    clock = ManualClock(START)
    backend = await make_backend(clock)
    ids = [await finish(backend, "completed") for _ in range(3)]
    ids.append(await finish(backend, "cancelled"))
    ids += [await finish(backend, "failed") for _ in range(3)]
    clock.advance(2 * DAY)
    params = JobPruneParams(retention=DAY, failed_retention=DAY, limit=2)

    batches = [await backend.job_prune(params) for _ in range(3)]

    done = [b.get(JobStatus.COMPLETED, 0) + b.get(JobStatus.CANCELLED, 0) for b in batches]
    assert done == [2, 2, 0]
    assert [b.get(JobStatus.FAILED, 0) for b in batches] == [2, 1, 0]
    assert await remaining(backend, *ids) == set()


async def test_a_pruned_jobs_idempotency_key_is_free_again(make_backend: MakeBackend) -> None:
    clock = ManualClock(START)
    backend = await make_backend(clock)
    old = await finish(backend, "completed", idempotency_key="order-42")
    assert await backend.job_insert_many([job(idempotency_key="order-42")]) == []

    clock.advance(2 * DAY)
    await backend.job_prune(JobPruneParams(retention=DAY, failed_retention=None, limit=10))
    (new,) = await backend.job_insert_many([job(idempotency_key="order-42")])

    assert new.id != old
    assert (await get(backend, new.id)).idempotency_key == "order-42"


@pytest.mark.postgres_only
async def test_prune_reads_its_index_on_a_large_table(backend: Backend, database_url: str) -> None:
    # 200,000 finished rows, none of them old enough: the prune must find that out from the
    # index, not by reading the table (its generic plan, as the package's connections keep).
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO equeue_jobs (id, job_type, queue, status, max_attempts, "
                    "attempts, started_at, finished_at) "
                    "SELECT gen_random_uuid(), 'old', 'default', "
                    "(ARRAY['completed', 'failed', 'cancelled'])[1 + g % 3], 1, 1, now(), now() "
                    "FROM generate_series(1, 200000) AS g"
                )
            )
            await conn.execute(text("ANALYZE equeue_jobs"))
        async with engine.connect() as conn:
            await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            sql = load_queries("postgres")["job_prune"]
            result = await conn.execute(
                text("EXPLAIN (ANALYZE, BUFFERS) " + sql),
                {"retention": 7 * DAY, "failed_retention": 30 * DAY, "limit": 1000, "now": None},
            )
            plan = "\n".join(result.scalars().all())
            await conn.rollback()
    finally:
        await engine.dispose()

    assert "equeue_jobs_finished_idx" in plan, plan
    assert "Seq Scan on equeue_jobs" not in plan, plan
