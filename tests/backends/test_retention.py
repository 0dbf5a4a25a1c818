"""Retention on both backends: ``job_prune`` deletes finished jobs past their retention, in
batches, and frees their idempotency keys; on PostgreSQL it reads its index on a large table.

Time is a ``ManualClock`` (on PostgreSQL too: its statements take the clock's time), so a
retention of days is crossed by moving the clock.
"""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import Backend, JobPruneParams
from fastapi_equeue.backends import normalise_url
from fastapi_equeue.backends._queries import load_queries, positional
from fastapi_equeue.clock import ManualClock
from fastapi_equeue.jobs import JobStatus
from tests.backends.conftest import MakeBackend
from tests.backends.factory import error_for, get, insert_one, job, outcome, start_job
from tests.conftest import pg_dsn

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


async def test_a_prune_deletes_at_most_its_batch_of_each_status_oldest_first(
    make_backend: MakeBackend,
) -> None:
    clock = ManualClock(START)
    backend = await make_backend(clock)
    completed = []
    for _ in range(3):
        completed.append(await finish(backend, "completed"))
        clock.advance(60)
    cancelled = await finish(backend, "cancelled")
    failed = [await finish(backend, "failed") for _ in range(3)]
    clock.advance(2 * DAY)
    params = JobPruneParams(retention=DAY, failed_retention=DAY, limit=2)

    first = await backend.job_prune(params)
    assert first == {JobStatus.COMPLETED: 2, JobStatus.CANCELLED: 1, JobStatus.FAILED: 2}
    assert await remaining(backend, *completed) == {completed[2]}
    assert await backend.job_prune(params) == {JobStatus.COMPLETED: 1, JobStatus.FAILED: 1}
    assert await backend.job_prune(params) == {}
    assert await remaining(backend, *completed, cancelled, *failed) == set()


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
    # index, not by reading the table, with the generic plan the package's connections keep
    # (which cannot know how many rows the cut-off passes). Nearly every row is completed, as
    # in a busy queue's history, which is where a plan that merged statuses read the table.
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO equeue_jobs (id, job_type, queue, status, max_attempts, "
                    "attempts, started_at, finished_at) "
                    "SELECT gen_random_uuid(), 'old', 'default', "
                    "CASE WHEN g % 100 = 0 THEN 'failed' WHEN g % 100 = 1 THEN 'cancelled' "
                    "ELSE 'completed' END, 1, 1, now(), now() - g * interval '1 second' "
                    "FROM generate_series(1, 200000) AS g"
                )
            )
            await conn.execute(text("ANALYZE equeue_jobs"))
    finally:
        await engine.dispose()
    sql, names = positional(load_queries("postgres")["job_prune"])
    values = {"retention": 7 * DAY, "failed_retention": 30 * DAY, "limit": 1000, "now": None}
    conn = await asyncpg.connect(pg_dsn(database_url), timeout=5)
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        # EXPLAIN ANALYZE runs the DELETE; the rollback keeps the rows for the assertion's
        # sake of honesty (nothing was old enough, but the plan must not depend on that).
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + sql, *(values[n] for n in names)
            )
        finally:
            await transaction.rollback()
        plan = "\n".join(row[0] for row in rows)
    finally:
        await conn.close()

    assert "equeue_jobs_finished_idx" in plan, plan
    assert "Seq Scan on equeue_jobs" not in plan, plan
