"""Periodic jobs from two standalone worker processes on PostgreSQL, each running the scheduler:
exactly one job per tick, with no gap and no duplicate, over many ticks.

The workers keep time by a file the test moves a minute at a time (``periodic_app.FileClock``),
so thirty ticks take seconds. After each move the test waits until both processes have dealt
with the tick (their logs say so: one enqueued it, the other found it enqueued), then checks
the jobs table.
"""

import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import pg_dsn
from tests.process.conftest import Database, Worker, Workers

pytestmark = pytest.mark.process

TICKS = 30
START = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC)
COMMAND = ["-m", "fastapi_equeue.worker", "periodic_app:queue"]


def tick(n: int) -> datetime:
    return START.replace(second=0) + timedelta(minutes=n)


def set_time(clock_file: Path, when: datetime) -> None:
    """Move every worker's clock: the file is replaced whole, never read half-written."""
    draft = clock_file.with_suffix(".draft")
    draft.write_text(repr(when.timestamp()))
    os.replace(draft, clock_file)


def dealt_with(worker: Worker, when: datetime) -> str | None:
    """How ``worker`` dealt with the tick ``when``, by its log: enqueued, elsewhere or not."""
    stamp = when.isoformat()
    for line in worker.text().splitlines():
        if f"for tick {stamp}" in line:
            return "enqueued"
        if f"tick {stamp} was enqueued elsewhere" in line:
            return "elsewhere"
    return None


@pytest.mark.postgres_only
async def test_two_worker_processes_enqueue_exactly_one_job_per_tick(
    process_url: str, workers: Workers, db: Database, tmp_path: Path
) -> None:
    clock_file = tmp_path / "clock"
    set_time(clock_file, START)
    env = {"EQUEUE_URL": process_url, "EQUEUE_CLOCK_FILE": str(clock_file)}
    pool = [workers.spawn(f"worker-{n}", COMMAND, env=env) for n in range(2)]

    async def both_registered() -> bool:
        return all("'every-minute' registered" in worker.text() for worker in pool)

    await db.until(both_registered, what="both schedulers to register", alive=pool)

    outcomes: list[list[str]] = []
    for n in range(1, TICKS + 1):
        set_time(clock_file, START + timedelta(minutes=n))

        async def both_dealt_with(n: int = n) -> bool:
            return all(dealt_with(worker, tick(n)) for worker in pool)

        await db.until(both_dealt_with, what=f"both schedulers to deal with tick {n}", alive=pool)
        outcomes.append([dealt_with(worker, tick(n)) or "missing" for worker in pool])

    conn = await asyncpg.connect(pg_dsn(process_url), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT scheduled_at FROM equeue_jobs WHERE job_type = 'tick' ORDER BY scheduled_at"
        )
    finally:
        await conn.close()
    assert [row["scheduled_at"] for row in rows] == [tick(n) for n in range(1, TICKS + 1)]
    # Every tick: one process enqueued it, the other found it done.
    assert all(sorted(o) == ["elsewhere", "enqueued"] for o in outcomes), outcomes
    # Neither is a leader: which one enqueues a tick is a race, and each won some.
    won = Counter(o.index("enqueued") for o in outcomes)
    assert set(won) == {0, 1}, won
    assert all(worker.alive() for worker in pool), workers.output()
