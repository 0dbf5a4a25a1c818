"""``metrics_snapshot``: the gauges of a metrics scrape, on SQLite and PostgreSQL, and its plan
on a table full of finished jobs (it must read the claimable index, never the whole table)."""

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import Backend, MetricsSnapshot
from fastapi_equeue.backends import normalise_url
from fastapi_equeue.backends._queries import load_queries
from tests.backends.conftest import AgeWorker
from tests.backends.factory import SLACK, job, registered, start_job, utcnow

FINISHED_JOBS = 200_000
STALLED_AFTER = 30.0


def by_queue(snapshot: MetricsSnapshot) -> dict[str, tuple[bool, int]]:
    return {row.queue: (row.paused, row.backlog) for row in snapshot.queues}


async def test_an_empty_database_has_no_queue_and_no_worker(backend: Backend) -> None:
    assert await backend.metrics_snapshot(STALLED_AFTER) == MetricsSnapshot(queues=(), workers=0)


async def test_backlog_counts_jobs_that_could_run_and_age_only_the_due_ones(
    backend: Backend,
) -> None:
    parent = job(queue="chain")
    await backend.job_insert_many(
        [
            job(queue="a"),
            job(queue="a"),
            job(queue="a", run_at=utcnow() + timedelta(hours=1)),
            job(queue="later", run_at=utcnow() + timedelta(hours=1)),
            parent,
            job(queue="chain", depends_on=(parent.id,)),  # blocked: not backlog
        ]
    )
    await start_job(backend, queue="busy")  # processing: not backlog
    await backend.queue_pause("idle", True)  # settings, no job

    snapshot = await backend.metrics_snapshot(STALLED_AFTER)

    assert by_queue(snapshot) == {
        "a": (False, 3),
        "later": (False, 1),
        "chain": (False, 1),
        "idle": (True, 0),
    }
    ages = {row.queue: row.oldest_age for row in snapshot.queues}
    assert ages["later"] is None
    assert ages["idle"] is None
    assert ages["a"] is not None
    assert 0 <= ages["a"] < SLACK.total_seconds()


async def test_workers_count_only_those_that_beat_recently(
    backend: Backend, age_worker: AgeWorker
) -> None:
    alive = await registered(backend)
    silent = await registered(backend)
    await age_worker(silent, STALLED_AFTER + 5)

    snapshot = await backend.metrics_snapshot(STALLED_AFTER)

    assert alive != silent
    assert snapshot == MetricsSnapshot(queues=(), workers=1)


async def test_the_snapshot_reads_the_claimable_index_not_the_finished_jobs(
    backend: Backend, database_url: str, backend_name: str
) -> None:
    if backend_name == "postgres":
        fill = (
            "INSERT INTO equeue_jobs (id, job_type, queue, status, max_attempts, attempts, "
            "finished_at) "
            "SELECT gen_random_uuid(), 'old', 'q' || (i % 5), 'completed', 1, 1, now() "
            f"FROM generate_series(1, {FINISHED_JOBS}) AS i"
        )
        explain, analyze = "EXPLAIN ", "ANALYZE equeue_jobs"
        values = {"now": None, "stalled_after": STALLED_AFTER}
    else:
        fill = (
            "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            f"WHERE i < {FINISHED_JOBS}) "
            "INSERT INTO equeue_jobs (id, job_type, queue, status, max_attempts, attempts, "
            "created_at, scheduled_at, finished_at) "
            "SELECT 'old-' || i, 'old', 'q' || (i % 5), 'completed', 1, 1, 0, 0, 0 FROM n"
        )
        explain, analyze = "EXPLAIN QUERY PLAN ", "ANALYZE"
        values = {"now": 0, "stalled_after": 30_000_000}
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(fill))
        await backend.job_insert_many([job(queue=f"q{i % 3}") for i in range(30)])
        async with engine.begin() as conn:
            await conn.execute(text(analyze))
            result = await conn.execute(
                text(explain + load_queries(backend_name)["metrics_snapshot"]), values
            )
            rows = result.all()
    finally:
        await engine.dispose()

    plan = "\n".join(str(row[-1]) for row in rows)
    # Every read of the jobs table goes through an index that holds the waiting jobs apart:
    # the claimable index (whose rows are the backlog) or, on PostgreSQL's choice, the status
    # index's queued and retrying entries. Never a scan of the 200,000 finished jobs.
    if backend_name == "postgres":
        reads = [line for line in plan.splitlines() if " on equeue_jobs " in line]
        assert reads, plan
        for line in reads:
            assert "Seq Scan" not in line, plan
            assert "equeue_jobs_queue_claimable_idx" in line or (
                "equeue_jobs_status_created_idx" in line
                and "Index Cond: (status = ANY ('{queued,retrying}'" in plan
            ), plan
    else:
        reads = [line for line in plan.splitlines() if "equeue_jobs" in line and "SCAN" in line]
        assert reads, plan
        assert all("INDEX equeue_jobs_queue_claimable_idx" in line for line in reads), plan
    snapshot = await backend.metrics_snapshot(STALLED_AFTER)
    assert by_queue(snapshot) == {"q0": (False, 10), "q1": (False, 10), "q2": (False, 10)}
