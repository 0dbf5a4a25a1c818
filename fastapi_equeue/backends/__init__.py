"""Backend construction: the only place that branches on the database dialect.

Internal: not covered by semver.
"""

from dataclasses import replace
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from fastapi_equeue.backend import Backend, BackendOptions
from fastapi_equeue.config import redact_url
from fastapi_equeue.errors import ConfigurationError

_SCHEMES = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
# SQLAlchemy's asyncpg dialect reads this URL parameter itself (PgBouncer's documented setting);
# asyncpg would send it to the server as a setting, which the server refuses.
_STATEMENT_CACHE = "prepared_statement_cache_size"


def normalise_url(database_url: str) -> str:
    """``database_url`` in the SQLAlchemy spelling of the driver this package uses (which a host
    can pass to ``create_async_engine``), or ``ConfigurationError``, whose message never shows
    the URL's password."""
    scheme, separator, rest = database_url.partition("://")
    if not separator:
        raise ConfigurationError(f"database_url is not a valid URL: {redact_url(database_url)!r}")
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise ConfigurationError(
            f"unsupported database {redact_url(scheme)!r}: use postgresql+asyncpg:// or "
            "sqlite+aiosqlite://"
        )
    url = f"{driver}://{rest}"
    if driver.startswith("sqlite"):
        _sqlite_path(url)
    elif not _readable_authority(url):
        # Not urllib's or asyncpg's own message: each quotes what it took for the host or port,
        # which is a piece of the password when the password holds an unencoded / ? # or @.
        raise ConfigurationError(
            f"database_url is not a valid URL: {redact_url(database_url)!r} (its user, host or "
            "port cannot be read; characters such as / ? # @ in a password must be "
            "percent-encoded)"
        )
    return url


def _readable_authority(url: str) -> bool:
    """Whether every reader takes the same user, password, host and port from ``url``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for the ValueError of a bad port
    except ValueError:
        return False
    if parts.netloc.count("@") > 1:
        return False  # asyncpg splits at the first "@", urllib at the last
    # A user part cut short by a "/" or "#" in the password leaves its "@" behind the host.
    return "@" in parts.netloc or "@" not in parts.path + parts.fragment


def open_backend(database_url: str, options: BackendOptions | None = None) -> Backend:
    """The backend for ``database_url``; nothing connects until first use."""
    url = normalise_url(database_url)
    options = options or BackendOptions()
    if url.startswith("postgresql"):
        dsn, cache = _postgres_dsn(url)
        if cache == 0:
            options = replace(options, prepared_statements=False)
        listen = None
        if options.listen_url is not None:
            listen, _ = _postgres_dsn(normalise_url(options.listen_url))
        return _postgres(dsn, listen, options)
    return _sqlite(_sqlite_path(url), options)


def _postgres_dsn(url: str) -> tuple[str, int | None]:
    """The libpq DSN asyncpg takes, and the statement cache size the URL asks for, if any."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    cache = None
    kept = []
    for key, value in query:
        if key != _STATEMENT_CACHE:
            kept.append((key, value))
            continue
        try:
            cache = int(value)
        except ValueError:
            raise ConfigurationError(
                f"{_STATEMENT_CACHE} must be a whole number, got {value!r}"
            ) from None
    rebuilt = parts._replace(scheme="postgresql", query=urlencode(kept))
    return urlunsplit(rebuilt), cache


def _sqlite_path(url: str) -> str:
    # sqlite+aiosqlite:///relative.db, sqlite+aiosqlite:////absolute.db: as SQLAlchemy reads them.
    path = unquote(urlsplit(url).path.removeprefix("/"))
    if path in ("", ":memory:"):
        raise ConfigurationError(
            "SQLite needs a file (sqlite+aiosqlite:///./equeue.db): every connection to an "
            "in-memory database is a separate, empty database"
        )
    return path


def _postgres(dsn: str, listen_dsn: str | None, options: BackendOptions) -> Backend:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "PostgreSQL needs asyncpg: pip install 'fastapi-equeue[postgres]'"
        ) from None
    from fastapi_equeue.backends.postgres.backend import PostgresBackend

    return PostgresBackend(dsn, listen_dsn or dsn, options)


def _sqlite(path: str, options: BackendOptions) -> Backend:
    from fastapi_equeue.backends.sqlite.backend import SQLiteBackend

    return SQLiteBackend(path, options)
