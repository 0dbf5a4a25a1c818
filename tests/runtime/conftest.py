"""Fixtures of the runtime tests: a second database, and a worker that died holding a job.

``other_database_url`` is a second, empty database of the backend under test (another SQLite
file, or a new PostgreSQL database dropped afterwards). ``claim_for_dead_worker`` registers a
worker that will never beat again and claims a job for it, through the queue's backend: the
state a worker killed mid-job leaves behind.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from fastapi_equeue import EQueue
from fastapi_equeue.backend import JobClaimParams, WorkerParams
from fastapi_equeue.jobs import new_job_id

ClaimForDeadWorker = Callable[[EQueue, str], Awaitable[str]]


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_dsn(url), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def other_database_url(
    backend_name: str, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A second empty database of the backend under test, besides ``database_url``."""
    if backend_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"equeue_other_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def claim_for_dead_worker() -> ClaimForDeadWorker:
    """Claim the job ``job_id`` (the only one due) for a registered worker that never beats
    again; return that worker's id. The queue must be connected."""

    async def claim(queue: EQueue, job_id: str) -> str:
        backend = queue._backend
        assert backend is not None, "connect the queue first"
        worker_id = new_job_id()
        await backend.worker_register(
            WorkerParams(id=worker_id, hostname="dead-host", pid=0, concurrency=1, queues=None)
        )
        claimed = await backend.job_claim(JobClaimParams(worker_id=worker_id, limit=1))
        assert [row.id for row in claimed] == [job_id]
        return worker_id

    return claim
