"""``PostgresDatabase``: the named statements run on asyncpg, one round trip each.

asyncpg directly, not through an ORM: a job's life is a handful of small statements, and the
layers between a statement and the wire cost more than the statement's own round trip. Each
connection keeps its statements prepared (asyncpg's statement cache), so after the first use a
statement is sent as a bind and execute only.
"""

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from fastapi_equeue.backends._database import (
    WORKER_STATEMENTS,
    Row,
    Statements,
    worker_lane_size,
)
from fastapi_equeue.backends._queries import load_queries, positional
from fastapi_equeue.backends.postgres.connections import STALE, Connections

POOL_SIZE = 20
"""Connections at most, by default: a worker needs two or three (claims, completions,
heartbeats), the API one per request in flight."""
WORKER_LANE = 4
"""Of those, the most kept for the workers' own statements (see ``WORKER_STATEMENTS``)."""
ACQUIRE_TIMEOUT = 30.0
"""Seconds to wait for a free connection before giving up (the API answers 503)."""
CONNECT_TIMEOUT = 10.0


class PostgresDatabase:
    """The backend's asyncpg connections (opened on first use) and its statements, numbered."""

    def __init__(self, dsn: str, *, pool_size: int | None = None, prepared: bool = True) -> None:
        self._statements = {name: positional(sql) for name, sql in load_queries("postgres").items()}

        def lane(size: int) -> Connections:
            return Connections(
                dsn,
                size=size,
                connect_timeout=CONNECT_TIMEOUT,
                acquire_timeout=ACQUIRE_TIMEOUT,
                setup=_setup if prepared else _setup_unprepared,
                # 0: asyncpg prepares nothing by name, which a pooler in transaction mode needs.
                statement_cache_size=None if prepared else 0,
            )

        size = pool_size or POOL_SIZE
        reserved = worker_lane_size(size, WORKER_LANE)
        self._connections = lane(size - reserved)
        self._worker_connections = lane(reserved) if reserved else self._connections

    async def close(self) -> None:
        """Close every connection (one in use closes when its statement ends)."""
        await self._connections.close()
        await self._worker_connections.close()

    async def fetch(
        self,
        name: str,
        values: Mapping[str, Any],
        *,
        read_only: bool = False,
        idempotent: bool = False,
    ) -> list[Row]:
        """Run one statement in autocommit: an atomic statement needs no BEGIN and COMMIT.

        A connection found dead under the statement is replaced, and the statement sent again
        on a fresh one when that is safe: a read, or an ``idempotent`` write. Any other write
        may have committed before the connection was lost, so its caller hears
        ``ConnectionResetError`` and decides.
        """
        sql, names = self._statements[name]
        arguments = [values[key] for key in names]
        lane = self._worker_connections if name in WORKER_STATEMENTS else self._connections
        for attempt in (1, 2):
            conn = await lane.acquire()
            healthy = False
            try:
                rows: list[Row] = await conn.fetch(sql, *arguments)
            except STALE as exc:
                # The others kept idle are likely as dead: close them all.
                lane.expire()
                if not (read_only or idempotent) or attempt == 2:
                    raise ConnectionResetError(f"the database connection was lost: {exc}") from exc
            except asyncpg.PostgresError:
                healthy = True  # the statement failed, the connection is fine
                raise
            else:
                healthy = True
                return rows
            finally:
                lane.release(conn, healthy=healthy)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Statements]:
        """A connection inside BEGIN ... COMMIT (ROLLBACK on error)."""
        conn = await self._connections.acquire()
        healthy = False
        try:
            async with conn.transaction():
                yield _InTransaction(conn, self._statements)
            healthy = True
        finally:
            self._connections.release(conn, healthy=healthy)

    def for_host(self, name: str, values: Mapping[str, Any]) -> tuple[str, Any]:
        """The statement in asyncpg's ``$n`` form, which SQLAlchemy's asyncpg dialect passes on."""
        sql, names = self._statements[name]
        return sql, tuple(values[key] for key in names)


class _InTransaction:
    def __init__(
        self, conn: asyncpg.Connection, statements: Mapping[str, tuple[str, tuple[str, ...]]]
    ) -> None:
        self._conn = conn
        self._statements = statements

    async def fetch(self, name: str, values: Mapping[str, Any]) -> list[Row]:
        sql, names = self._statements[name]
        return await self._conn.fetch(sql, *(values[key] for key in names))  # type: ignore[no-any-return]

    async def script(self, sql: str) -> None:
        await self._conn.execute(sql)


async def _setup(conn: asyncpg.Connection) -> None:
    await _setup_unprepared(conn)
    # Prepared statements keep one generic plan: the hot statements are written for their
    # indexes, and a custom plan per call would double the cost of a claim (about 0.4 ms of
    # planning against 0.3 ms of execution).
    await conn.execute("SET plan_cache_mode = force_generic_plan")


async def _setup_unprepared(conn: asyncpg.Connection) -> None:
    # jsonb arrives decoded, as it does on a host's SQLAlchemy connection; it is sent as text.
    await conn.set_type_codec(
        "jsonb", encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
    )
