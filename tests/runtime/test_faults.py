"""Dropped database connections lose no job and run none twice."""

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from fastapi_equeue import EQueue, JobStatus, events
from fastapi_equeue.backends._sql import SQLBackend
from fastapi_equeue.testing import eventually


async def _terminate_connections(url: str) -> int:
    dsn = make_url(url).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                make_url(url).database,
            )
        )
    finally:
        await conn.close()


@pytest.mark.postgres_only
async def test_terminated_connections_lose_and_duplicate_no_job(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    queue = make_queue(concurrency=8)
    runs: Counter[int] = Counter()
    release = asyncio.Event()

    @queue.task(retry_delay=0, max_attempts=5)
    async def work(n: int) -> int:
        runs[n] += 1
        if n < 8:
            await release.wait()
        return n

    async with queue:
        jobs = await queue.client.enqueue_many(
            [{"job_type": "work", "payload": {"n": n}} for n in range(200)]
        )
        # Eight jobs hold their slots; cut every connection (pool and LISTEN) under them.
        await eventually(lambda: _all_running(runs, 8), timeout=10)
        assert await _terminate_connections(database_url) > 0
        release.set()
        finished = [await queue.client.wait(job.id, timeout=30) for job in jobs]

    assert [job.status for job in finished] == [JobStatus.COMPLETED] * 200
    assert [job.result for job in finished] == list(range(200))
    assert sorted(runs) == list(range(200))
    assert max(runs.values()) == 1


async def _all_running(runs: Counter[int], n: int) -> bool:
    return all(runs[i] == 1 for i in range(n))


async def test_outcomes_whose_write_landed_before_its_answer_was_lost_are_not_discarded(
    make_queue: Callable[..., EQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window a crash hits now and then (the commit lands, its answer never comes back),
    # opened every time: the first write of outcomes commits, then its caller hears an error.
    queue = make_queue(concurrency=4)
    lost = asyncio.Event()
    original = SQLBackend.job_complete_many

    async def answer_lost(self: SQLBackend, params: Any) -> Any:
        written = await original(self, params)
        if written and not lost.is_set():
            lost.set()
            raise ConnectionResetError("the connection died before the commit's answer came")
        return written

    monkeypatch.setattr(SQLBackend, "job_complete_many", answer_lost)

    @queue.task
    async def work(n: int) -> int:
        return n

    with queue.events.record(events.JobCompleted, events.JobOutcomeDiscarded) as seen:
        async with queue:
            jobs = [await queue.client.enqueue("work", {"n": n}) for n in range(6)]
            done = [await queue.client.wait(job.id, timeout=10) for job in jobs]
            await seen.wait_count(6, timeout=10)

    assert lost.is_set()
    assert [job.status for job in done] == [JobStatus.COMPLETED] * 6
    assert not [e for e in seen.events if isinstance(e, events.JobOutcomeDiscarded)]
    assert sorted(e.job_id for e in seen.events) == sorted(job.id for job in jobs)
