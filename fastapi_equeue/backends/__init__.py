"""Backend construction: the only place that branches on the database dialect.

Internal: not covered by semver.
"""

from urllib.parse import unquote, urlsplit

from fastapi_equeue.backend import Backend
from fastapi_equeue.clock import Clock
from fastapi_equeue.errors import ConfigurationError

_SCHEMES = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def normalise_url(database_url: str) -> str:
    """``database_url`` in the SQLAlchemy spelling of the driver this package uses (which a host
    can pass to ``create_async_engine``), or ``ConfigurationError``."""
    scheme, separator, rest = database_url.partition("://")
    if not separator:
        raise ConfigurationError(f"database_url is not a valid URL: {database_url!r}")
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise ConfigurationError(
            f"unsupported database {scheme!r}: use postgresql+asyncpg:// or sqlite+aiosqlite://"
        )
    url = f"{driver}://{rest}"
    if driver.startswith("sqlite"):
        _sqlite_path(url)
    else:
        try:
            urlsplit(url).port  # noqa: B018 - read for the ValueError of a bad port
        except ValueError as exc:
            raise ConfigurationError(f"database_url is not a valid URL: {exc}") from None
    return url


def open_backend(database_url: str, clock: Clock) -> Backend:
    """The backend for ``database_url``; nothing connects until first use."""
    url = normalise_url(database_url)
    if url.startswith("postgresql"):
        return _postgres(url)
    return _sqlite(_sqlite_path(url), clock)


def _sqlite_path(url: str) -> str:
    # sqlite+aiosqlite:///relative.db, sqlite+aiosqlite:////absolute.db: as SQLAlchemy reads them.
    path = unquote(urlsplit(url).path.removeprefix("/"))
    if path in ("", ":memory:"):
        raise ConfigurationError(
            "SQLite needs a file (sqlite+aiosqlite:///./equeue.db): every connection to an "
            "in-memory database is a separate, empty database"
        )
    return path


def _postgres(url: str) -> Backend:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "PostgreSQL needs asyncpg: pip install 'fastapi-equeue[postgres]'"
        ) from None
    from fastapi_equeue.backends._queries import load_queries
    from fastapi_equeue.backends.postgres.backend import PostgresBackend
    from fastapi_equeue.backends.postgres.database import PostgresDatabase
    from fastapi_equeue.backends.postgres.notifier import PostgresNotifier

    dsn = "postgresql" + url.removeprefix("postgresql+asyncpg")
    notifier = PostgresNotifier(dsn, load_queries("postgres")["notifier_ping"])
    return PostgresBackend(PostgresDatabase(dsn), notifier)


def _sqlite(path: str, clock: Clock) -> Backend:
    from fastapi_equeue.backends.sqlite.backend import SQLiteBackend
    from fastapi_equeue.backends.sqlite.database import SQLiteDatabase

    return SQLiteBackend(SQLiteDatabase(path), clock)
