"""Fixtures of the backend tests: migrated backends on the test's database, and fresh databases.

``make_backend`` opens a ``Backend`` on ``database_url`` (already emptied by the root conftest),
migrates it and closes it at the end of the test; ``backend`` is the first one.
``fresh_database_url`` is a database that has never been migrated: a new SQLite file, or a new
PostgreSQL database on the server of ``postgres_url``, dropped afterwards.
"""

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import Backend, BackendOptions
from fastapi_equeue.backends import normalise_url, open_backend
from fastapi_equeue.clock import Clock

MakeBackend = Callable[..., Awaitable[Backend]]
AgeWorker = Callable[[str, float], Awaitable[None]]


@pytest.fixture
async def make_backend(database_url: str) -> AsyncIterator[MakeBackend]:
    """Open migrated backends (each with its own engine) on the test's database.

    ``clock`` (default: none, the database's own on PostgreSQL and the system's on SQLite) is
    where stored times come from.
    """
    opened: list[Backend] = []

    async def make(clock: Clock | None = None) -> Backend:
        backend = open_backend(database_url, BackendOptions(clock=clock))
        opened.append(backend)
        await backend.open()
        await backend.migrate()
        return backend

    yield make
    for backend in reversed(opened):
        await backend.close()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> Backend:
    """One migrated backend on the test's (empty) database."""
    return await make_backend()


@pytest.fixture
def age_worker(database_url: str, backend_name: str) -> AgeWorker:
    """Move a worker's last heartbeat ``seconds`` into the past, as if it had gone silent."""
    if backend_name == "postgres":
        statement = (
            "UPDATE equeue_workers SET last_beat_at = last_beat_at - make_interval(secs => :s) "
            "WHERE id = CAST(:id AS uuid)"
        )
    else:
        # SQLite stores whole microseconds since the epoch.
        statement = (
            "UPDATE equeue_workers SET last_beat_at = last_beat_at - :s * 1000000 WHERE id = :id"
        )

    async def age(worker_id: str, seconds: float) -> None:
        engine = create_async_engine(normalise_url(database_url))
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), {"s": seconds, "id": worker_id})
                assert result.rowcount == 1, f"no worker {worker_id} to age"
        finally:
            await engine.dispose()

    return age


@pytest.fixture
async def fresh_database_url(new_database: Callable[[str], Awaitable[str]]) -> str:
    """A database of the backend under test that no one has migrated yet."""
    return await new_database("fresh")
