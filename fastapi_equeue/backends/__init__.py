"""Backend construction: the only place that branches on the database dialect.

Internal: not covered by semver.
"""

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import Backend
from fastapi_equeue.clock import Clock
from fastapi_equeue.errors import ConfigurationError

_ASYNC_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def normalise_url(database_url: str) -> URL:
    """``database_url`` with the async driver this package uses, or ``ConfigurationError``."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"database_url is not a valid URL: {exc}") from None
    driver = _ASYNC_DRIVERS.get(url.drivername)
    if driver is None:
        raise ConfigurationError(
            f"unsupported database {url.drivername!r}: use postgresql+asyncpg:// or "
            "sqlite+aiosqlite://"
        )
    url = url.set(drivername=driver)
    if driver.startswith("sqlite") and url.database in (None, "", ":memory:"):
        raise ConfigurationError(
            "SQLite needs a file (sqlite+aiosqlite:///./equeue.db): every connection to an "
            "in-memory database is a separate, empty database"
        )
    return url


def open_backend(database_url: str, clock: Clock) -> Backend:
    """The backend for ``database_url``; nothing connects until first use."""
    url = normalise_url(database_url)
    if url.drivername.startswith("postgresql"):
        return _postgres(url)
    return _sqlite(url, clock)


def _postgres(url: URL) -> Backend:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "PostgreSQL needs asyncpg: pip install 'fastapi-equeue[postgres]'"
        ) from None
    from fastapi_equeue.backends._queries import load_queries
    from fastapi_equeue.backends.postgres.backend import PostgresBackend
    from fastapi_equeue.backends.postgres.notifier import PostgresNotifier

    engine = create_async_engine(url, pool_size=10, max_overflow=10)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    notifier = PostgresNotifier(dsn, load_queries("postgres")["notifier_ping"])
    return PostgresBackend(engine, notifier)


def _sqlite(url: URL, clock: Clock) -> Backend:
    from fastapi_equeue.backends.sqlite.backend import SQLiteBackend, configure_engine

    engine = create_async_engine(url)
    configure_engine(engine)
    return SQLiteBackend(engine, clock)
