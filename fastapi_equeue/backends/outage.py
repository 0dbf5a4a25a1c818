"""Telling a database that cannot serve right now from a statement it refused.

Internal: not covered by semver. The API answers the first with 503 (try again), the standalone
worker with one clear line instead of a traceback.
"""

import sqlite3
import sys

# SQLSTATE classes: 08 connection exceptions; 53 insufficient resources (too many connections);
# 57P the server is shutting down or starting up; 55000 the database does not allow connections.
_OUTAGE_SQLSTATES = ("08", "53", "57P")


def database_errors() -> tuple[type[BaseException], ...]:
    """Every error a database driver of this package (or a host's SQLAlchemy) raises."""
    errors: list[type[BaseException]] = [OSError, sqlite3.Error]
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None:
        errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None:
        errors.append(sqlalchemy_exc.SQLAlchemyError)
    return tuple(errors)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot serve now (down, restarting, full, refusing,
    locked): the request may well succeed later."""
    if isinstance(exc, OSError | sqlite3.OperationalError):
        return True
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(exc, asyncpg.InterfaceError):
        # The connection was closed under the statement.
        return True
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None:
        if isinstance(
            exc,
            sqlalchemy_exc.OperationalError
            | sqlalchemy_exc.InterfaceError
            | sqlalchemy_exc.DisconnectionError
            | sqlalchemy_exc.TimeoutError,
        ):
            return True
        if isinstance(exc, sqlalchemy_exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig or exc
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    return sqlstate.startswith(_OUTAGE_SQLSTATES) or sqlstate == "55000"
