"""``SQLiteDatabase``: the named statements run on a few aiosqlite connections to one file.

Every write is its own ``BEGIN IMMEDIATE`` transaction: it takes the file's write lock up front,
so a claim cannot read rows that another writer then changes, and writers queue on the busy
timeout instead of failing with "database is locked" halfway. Reads run in autocommit and,
under WAL, never wait for a writer, not even for a host's long transaction.
"""

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from fastapi_equeue.backends._database import (
    WORKER_STATEMENTS,
    Row,
    Statements,
    worker_lane_size,
)
from fastapi_equeue.backends._queries import load_queries

BUSY_TIMEOUT_MS = 30_000
POOL_SIZE = 5
"""Connections at most, by default (each is a thread); SQLite runs one writer at a time anyway."""
WORKER_LANE = 1
"""Of those, the one kept for the workers' own statements (see ``WORKER_STATEMENTS``)."""
WAL_RETRY_DELAY = 0.01


class SQLiteDatabase:
    """Up to ``pool_size`` connections to the file at ``path``, opened on first use."""

    def __init__(self, path: str, *, pool_size: int | None = None) -> None:
        self._path = path
        self._statements = load_queries("sqlite")
        size = pool_size or POOL_SIZE
        reserved = worker_lane_size(size, WORKER_LANE)
        self._lane = _Lane(size - reserved)
        self._worker_lane = _Lane(reserved) if reserved else self._lane
        self._discarded: set[asyncio.Task[None]] = set()
        self._closed = False

    async def close(self) -> None:
        """Close every idle connection; one in use is closed when its statement ends.

        Each connection is a (non-daemon) thread: one left open would keep the process alive.
        """
        self._closed = True
        for lane in (self._lane, self._worker_lane):
            idle, lane.idle = lane.idle, []
            for conn in idle:
                await _close_quietly(conn)
        if self._discarded:
            await asyncio.gather(*self._discarded, return_exceptions=True)

    async def fetch(
        self,
        name: str,
        values: Mapping[str, Any],
        *,
        read_only: bool = False,
        idempotent: bool = False,
    ) -> list[Row]:
        """Run one statement: a write in its own ``BEGIN IMMEDIATE`` transaction. (A file's
        connection is never lost under a statement, so nothing is ever sent twice.)"""
        sql = self._statements[name]
        lane = self._worker_lane if name in WORKER_STATEMENTS else self._lane
        async with self._connection(lane) as conn:
            if read_only:
                return list(await conn.execute_fetchall(sql, values))
            await conn.execute("BEGIN IMMEDIATE")
            rows: list[Row] = list(await conn.execute_fetchall(sql, values))
            await conn.execute("COMMIT")
            return rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Statements]:
        """A connection inside ``BEGIN IMMEDIATE`` ... ``COMMIT``."""
        async with self._connection(self._lane) as conn:
            await conn.execute("BEGIN IMMEDIATE")
            yield _InTransaction(conn, self._statements)
            await conn.execute("COMMIT")

    def for_host(self, name: str, values: Mapping[str, Any]) -> tuple[str, Any]:
        """The statement with its ``:name`` parameters, which sqlite3 binds from a dict."""
        return self._statements[name], dict(values)

    @asynccontextmanager
    async def _connection(self, lane: "_Lane") -> AsyncIterator[aiosqlite.Connection]:
        async with lane.slots:
            conn = lane.idle.pop() if lane.idle else await self._connect()
            try:
                yield conn
            except BaseException:
                # Whatever it was doing (a transaction left open, a statement still running in
                # its thread after a cancellation), closing the connection rolls it back.
                self._discard(conn)
                raise
            if self._closed:
                self._discard(conn)
            else:
                lane.idle.append(conn)

    def _discard(self, conn: aiosqlite.Connection) -> None:
        task = asyncio.ensure_future(_close_quietly(conn))
        self._discarded.add(task)
        task.add_done_callback(self._discarded.discard)

    async def _connect(self) -> aiosqlite.Connection:
        # The busy timeout comes first: switching a new file to WAL takes an exclusive lock,
        # which several connections opening at once would otherwise fail to get.
        conn = await aiosqlite.connect(
            self._path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await _use_wal(conn)
            await conn.execute("PRAGMA synchronous=NORMAL")
            # Pruning a job drops its dependency edges (ON DELETE CASCADE).
            await conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            await _close_quietly(conn)
            raise
        return conn


class _Lane:
    """Up to ``size`` connections, and those of them idle."""

    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[aiosqlite.Connection] = []


class _InTransaction:
    def __init__(self, conn: aiosqlite.Connection, statements: Mapping[str, str]) -> None:
        self._conn = conn
        self._statements = statements

    async def fetch(self, name: str, values: Mapping[str, Any]) -> list[Row]:
        return list(await self._conn.execute_fetchall(self._statements[name], values))

    async def script(self, sql: str) -> None:
        await self._conn.execute(sql)


async def _use_wal(conn: aiosqlite.Connection) -> None:
    """Put the file in WAL mode (once per file: the mode is stored in it).

    Switching takes an exclusive lock, and SQLite answers "database is locked" at once, without
    waiting on the busy timeout, when another connection is opening the same new file: retried,
    briefly, until one of them has switched it.
    """
    deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            rows = await conn.execute_fetchall("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(WAL_RETRY_DELAY)
            continue
        if [tuple(row) for row in rows] != [("wal",)]:
            raise sqlite3.OperationalError(f"could not switch {conn} to WAL: {rows}")
        return


async def _close_quietly(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
