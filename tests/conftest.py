"""Fixtures shared by every test: a database per backend, and queues built on it.

Every test that takes ``database_url`` (or ``make_queue``) runs once on SQLite and once on
PostgreSQL. PostgreSQL comes from ``EQUEUE_TEST_DATABASE_URL`` (an admin database on the server,
by default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``): each run creates its own
database there and drops it at the end; tables are emptied before every test. Without a reachable
server the PostgreSQL cases skip, unless ``--require-postgres`` is given (as CI does), which
turns that into an error.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from fastapi_equeue import EQueue

DEFAULT_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgres")

# Intervals short enough that tests about polling, heartbeats and rescue finish quickly.
FAST = {
    "poll_interval": 0.05,
    "heartbeat_interval": 0.2,
    "stalled_after": 1.0,
    "shutdown_grace": 2.0,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-postgres",
        action="store_true",
        default=False,
        help="fail, instead of skipping, when PostgreSQL is unreachable (CI sets this)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked postgres_only keep only their PostgreSQL case.
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend_name") if callspec else None
        if item.get_closest_marker("postgres_only") and backend == "sqlite":
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _blocking(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to the end on its own loop in a thread, whatever loop the caller is on."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


def pg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a DSN that asyncpg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def admin(url: str, statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE, TRUNCATE) on its own connection to ``url``."""
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for this test run (migrated by the first queue that starts)."""
    admin_url = os.environ.get("EQUEUE_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    name = f"equeue_test_{uuid.uuid4().hex[:12]}"
    try:
        _blocking(admin(admin_url, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL is unreachable at {make_url(admin_url)!r}: {exc}"
        if request.config.getoption("--require-postgres"):
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    _blocking(admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


EMPTY_TABLES = """
DO $$
BEGIN
    EXECUTE (
        SELECT 'TRUNCATE ' || string_agg(quote_ident(tablename), ', ') || ' CASCADE'
        FROM pg_tables
        WHERE schemaname = current_schema() AND tablename LIKE 'equeue%'
          AND tablename <> 'equeue_migrations'
    );
END $$
"""
"""Empties every table of the schema but the migrations' record."""


async def _empty_postgres(url: str) -> None:
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        exists = await conn.fetchval("SELECT to_regclass('equeue_jobs') IS NOT NULL")
        if exists:
            await conn.execute(EMPTY_TABLES)
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend under test: every test that depends on it runs once per backend."""
    return str(request.param)


@pytest.fixture
def database_url(backend_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of the backend under test."""
    if backend_name == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'equeue.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _blocking(_empty_postgres(url))
    return url


@pytest.fixture
async def new_database(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Make more empty databases of the backend under test: ``await new_database("label")``.

    They are dropped (PostgreSQL) or left in ``tmp_path`` (SQLite) when the test ends.
    """
    created: list[str] = []
    server_url = request.getfixturevalue("postgres_url") if backend_name == "postgres" else ""

    async def make(label: str) -> str:
        if backend_name == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / f'{label}-{uuid.uuid4().hex[:8]}.db'}"
        name = f"equeue_{label}_{uuid.uuid4().hex[:12]}"
        await admin(server_url, f'CREATE DATABASE "{name}"')
        created.append(name)
        return make_url(server_url).set(database=name).render_as_string(hide_password=False)

    yield make
    for name in created:
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_queue(database_url: str) -> Callable[..., EQueue]:
    """Build ``EQueue``s on the test's database with fast intervals (keywords override them).

    Queues built here are not started; a test starts them with ``async with``.
    """

    def make(**options: Any) -> EQueue:
        return EQueue(database_url, **{**FAST, **options})

    return make
