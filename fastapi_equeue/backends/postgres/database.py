"""``PostgresDatabase``: the named statements run on an asyncpg pool, one round trip each.

asyncpg directly, not through an ORM: a job's life is a handful of small statements, and the
layers between a statement and the wire cost more than the statement's own round trip. Each
connection keeps its statements prepared (asyncpg's statement cache), so after the first use a
statement is sent as a bind and execute only.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from fastapi_equeue.backends._queries import load_queries, positional
from fastapi_equeue.backends._sql import Row, Statements

POOL_SIZE = 20
"""Connections at most: a worker needs two or three (claims, completions, heartbeats), the API
one per request in flight."""
ACQUIRE_TIMEOUT = 30.0
"""Seconds to wait for a free connection before giving up (the API answers 503)."""
CONNECT_TIMEOUT = 10.0

# What a statement on a connection the server has ended raises: the pool still held it (after a
# restart, or a terminated session). asyncpg raises InternalClientError when the server's
# goodbye arrived while the connection sat idle and has not been read yet.
_STALE = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.InternalClientError,
)


class PostgresDatabase:
    """A lazily opened asyncpg pool and the prepared form of every named statement."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._statements = {name: positional(sql) for name, sql in load_queries("postgres").items()}
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def close(self) -> None:
        """Close every pooled connection (waiting for those in use for up to 10 seconds)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10.0)
            except TimeoutError:
                pool.terminate()

    async def fetch(
        self, name: str, values: Mapping[str, Any], *, read_only: bool = False
    ) -> list[Row]:
        """Run one statement in autocommit: an atomic statement needs no BEGIN and COMMIT."""
        sql, names = self._statements[name]
        arguments = [values[key] for key in names]
        pool = self._pool or await self._open()
        for attempt in (1, 2):
            # asyncio.timeout rather than acquire(timeout=): on Python 3.11 the latter runs
            # every acquire in a task of its own, a loop iteration per statement.
            async with asyncio.timeout(ACQUIRE_TIMEOUT):
                conn = await pool.acquire()
            try:
                return await conn.fetch(sql, *arguments)  # type: ignore[no-any-return]
            except (*_STALE, OSError) as exc:
                # The others in the pool are likely as dead: replace them all.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
                await pool.expire_connections()
                # A read is sent again once; a write may have committed before the
                # connection was lost, so its caller hears that it may try again.
                if not read_only or attempt == 2:
                    raise ConnectionResetError(f"the database connection was lost: {exc}") from exc
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Statements]:
        """A pooled connection inside BEGIN ... COMMIT (ROLLBACK on error)."""
        pool = self._pool or await self._open()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            yield _InTransaction(conn, self._statements)

    def for_host(self, name: str, values: Mapping[str, Any]) -> tuple[str, Any]:
        """The statement in asyncpg's ``$n`` form, which SQLAlchemy's asyncpg dialect passes on."""
        sql, names = self._statements[name]
        return sql, tuple(values[key] for key in names)

    async def _open(self) -> asyncpg.Pool:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=POOL_SIZE,
                    timeout=CONNECT_TIMEOUT,
                    init=_init_connection,
                    reset=_keep_session,
                )
            return self._pool


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


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool.

    asyncpg's default reset sends RESET ALL, UNLISTEN * and friends: one more round trip per
    statement. These connections never change session state (settings, LISTEN, session locks,
    cursors), and asyncpg still rolls back a transaction that was left open.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb arrives decoded, as it does on a host's SQLAlchemy connection; it is sent as text.
    await conn.set_type_codec(
        "jsonb", encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
    )
