"""Chains in the storage seam, on both backends: linking, releasing, the races between a new
dependent and its dependency's end, the sweep after a crash, and a claim that waiting jobs do not
slow down."""

import asyncio
import json

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import Backend, JobClaimParams, JobListParams
from fastapi_equeue.backends import normalise_url
from fastapi_equeue.backends._queries import load_queries
from fastapi_equeue.backends._sql import SQLBackend
from fastapi_equeue.errors import UnknownDependency
from fastapi_equeue.jobs import JobStatus
from tests.backends.factory import (
    DEADLINE,
    claim_ids,
    get,
    insert_one,
    job,
    new_worker_id,
    outcome,
    registered,
    start_job,
)

WAITING = 100_000


async def test_a_dependent_is_blocked_until_its_dependency_completes(backend: Backend) -> None:
    parent = await start_job(backend)
    child = await insert_one(backend, depends_on=(parent.id,), queue="children")

    assert child.blocked
    assert child.depends_on == [parent.id]
    assert (await get(backend, parent.id)).has_dependents
    assert await claim_ids(backend, queue="children") == []

    await backend.job_complete_many([outcome(parent, "completed", result=1)])

    released = await get(backend, child.id)
    assert not released.blocked
    assert released.status is JobStatus.QUEUED
    assert not (await get(backend, parent.id)).release_pending
    assert await claim_ids(backend, queue="children") == [child.id]


async def test_an_unknown_dependency_writes_nothing(backend: Backend) -> None:
    known = await insert_one(backend)
    missing = new_worker_id()

    with pytest.raises(UnknownDependency):
        await backend.job_insert_many(
            [job(depends_on=(known.id,)), job(depends_on=(known.id, missing))]
        )

    assert [row.id for row in await backend.job_list(JobListParams(limit=100))] == [known.id]
    assert not (await get(backend, known.id)).has_dependents


async def test_a_dependency_ending_while_its_dependent_is_inserted_still_releases_it(
    backend: Backend, database_url: str
) -> None:
    # The dependent's transaction holds the dependency's row (job_dependencies_lock) when the
    # dependency's outcome is written: the write waits for the commit, and must then release
    # the dependent that its own statement's snapshot cannot see.
    parent = await start_job(backend)
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.connect() as conn:
            await conn.begin()
            child = (await backend.job_insert_many([job(depends_on=(parent.id,))], conn=conn))[0]
            ending = asyncio.create_task(
                backend.job_complete_many([outcome(parent, "completed", result=1)])
            )
            done, _ = await asyncio.wait({ending}, timeout=0.5)
            assert not done, "the outcome did not wait for the dependent's transaction"
            await conn.commit()
        written = await asyncio.wait_for(ending, DEADLINE)
    finally:
        await engine.dispose()

    assert written == {parent.id: JobStatus.COMPLETED}
    released = await get(backend, child.id)
    assert not released.blocked
    assert await claim_ids(backend) == [child.id]


async def test_the_sweep_releases_what_a_dead_worker_left(backend: Backend) -> None:
    assert isinstance(backend, SQLBackend)
    parent = await start_job(backend)
    child = await insert_one(backend, depends_on=(parent.id,))
    # The outcome's statement alone, as a worker that died before the release would leave it.
    rows = json.dumps([backend._outcome(outcome(parent, "failed"))])
    await backend._db.fetch("job_complete_many", backend._bind({"rows": rows}))
    assert (await get(backend, parent.id)).release_pending
    assert (await get(backend, child.id)).blocked

    assert await backend.job_release_pending(10) == 1

    cancelled = await get(backend, child.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.last_error == f"DependencyFailed: job {parent.id} ended failed"
    assert cancelled.finished_at is not None
    assert not (await get(backend, parent.id)).release_pending
    assert await backend.job_release_pending(10) == 0


async def test_a_rescue_that_fails_a_job_cancels_its_dependents(backend: Backend) -> None:
    parent = await start_job(backend, max_attempts=1)
    child = await insert_one(backend, depends_on=(parent.id,))
    assert parent.worker_id is not None
    await backend.worker_deregister(parent.worker_id)

    await backend.job_rescue_stalled(30.0, new_worker_id())

    assert (await get(backend, parent.id)).status is JobStatus.FAILED
    assert (await get(backend, child.id)).status is JobStatus.CANCELLED


async def test_waiting_jobs_are_not_a_queue_to_serve(backend: Backend) -> None:
    parent = await insert_one(backend, queue="first", delay=3600)
    await insert_one(backend, queue="second", depends_on=(parent.id,))

    found = {row.name: row.claimable for row in await backend.queue_find(None)}

    # A queue holding only blocked jobs has nothing a worker could claim.
    assert found == {"first": True}


_BLOCKED = {
    "postgresql": (
        "INSERT INTO equeue_jobs (id, job_type, queue, max_attempts, blocked, depends_on) "
        "SELECT gen_random_uuid(), 'step', 'default', 1, true, '[]'::jsonb "
        "FROM generate_series(1, :n)"
    ),
    "sqlite": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) "
        "INSERT INTO equeue_jobs (id, job_type, queue, max_attempts, created_at, scheduled_at, "
        "blocked, depends_on) "
        "SELECT lower(hex(randomblob(16))), 'step', 'default', 1, 0, 0, 1, '[]' FROM n"
    ),
}


async def test_the_claim_reads_only_claimable_rows_among_many_waiting_ones(
    backend: Backend, database_url: str, backend_name: str
) -> None:
    await backend.job_insert_many([job(priority=i % 3) for i in range(10)])
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.connect() as conn:
            await conn.execute(text(_BLOCKED[engine.dialect.name]), {"n": WAITING})
            await conn.commit()
            await conn.execute(
                text("ANALYZE equeue_jobs" if backend_name == "postgres" else "ANALYZE")
            )
            await conn.commit()
            worker = await registered(backend)
            if backend_name == "postgres":
                # Run for real (in a transaction rolled back): every row the claim's index scan
                # returned was a claimable one.
                plan = "\n".join(
                    (
                        await conn.execute(
                            text(
                                "EXPLAIN (ANALYZE, FORMAT TEXT) "
                                + load_queries("postgres")["job_claim"]
                            ),
                            {"limit": 50, "worker_id": worker, "queue": "default", "now": None},
                        )
                    ).scalars()
                )
                await conn.rollback()
                assert "Index Scan using equeue_jobs_queue_claimable_idx" in plan, plan
                assert "Seq Scan on equeue_jobs" not in plan, plan
                scan = next(line for line in plan.splitlines() if "claimable_idx" in line)
                assert "rows=10 " in scan, plan
            else:
                plan = "\n".join(
                    str(row[-1])
                    for row in await conn.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + load_queries("sqlite")["job_claim"],
                        {
                            "limit": 50,
                            "worker_id": worker,
                            "queue": "default",
                            "now": 2**62,
                            "limited": False,
                        },
                    )
                )
                await conn.rollback()
                assert "equeue_jobs_queue_claimable_idx" in plan, plan
                # The partial index holds the claimable rows only.
                (entries,) = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM equeue_jobs "
                            "INDEXED BY equeue_jobs_queue_claimable_idx "
                            "WHERE queue = 'default' AND status IN ('queued', 'retrying') "
                            "AND blocked = 0"
                        )
                    )
                ).one()
                assert entries == 10
    finally:
        await engine.dispose()

    claim = await backend.job_claim(JobClaimParams(worker_id=worker, queue="default", limit=50))
    assert len(claim.jobs) == 10
