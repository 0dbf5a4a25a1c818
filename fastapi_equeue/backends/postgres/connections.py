"""``Connections``: the few asyncpg connections one backend keeps, handed out one at a time.

asyncpg's own pool is general (setup and reset hooks, inactive-connection expiry, a shielded
release in a task of its own) and cost about 60 us per statement here, a sixth of an enqueue.
This keeps only what autocommit statements need: an idle connection is taken and given back
with no round trip and no task, up to ``size`` are open at once, and a connection that saw
anything unusual (an error, a cancellation, a transaction left open) is closed, not reused.

A connection can die without a word: a failover, a restart whose goodbye never arrived, a path
that vanished. One that sat idle for ``check_after`` seconds is pinged before it is handed out,
and a dead one is closed with every other idle one (they sat through the same outage). Idle
connections are reused newest first, so a busy process keeps reusing warm connections and
pays for a ping only after a lull.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg

Setup = Callable[[asyncpg.Connection], Awaitable[None]]

# What a statement on a connection the server has ended raises: it sat idle since before a
# restart, or its session was terminated. asyncpg raises InternalClientError when the server's
# goodbye arrived while the connection sat idle and has not been read yet.
STALE = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.InternalClientError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


class Connections:
    """Up to ``size`` connections to ``dsn``, opened on demand and kept while healthy."""

    def __init__(
        self,
        dsn: str,
        *,
        size: int,
        connect_timeout: float,
        acquire_timeout: float,
        setup: Setup,
        statement_cache_size: int | None = None,
        check_after: float = 1.0,
        ping_timeout: float = 2.0,
    ) -> None:
        self._dsn = dsn
        self._statement_cache_size = statement_cache_size
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._check_after = check_after
        self._ping_timeout = ping_timeout
        self._setup = setup
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        self._free = asyncio.Semaphore(size)
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        """An open connection; waits up to ``acquire_timeout`` when all are in use."""
        if self._free.locked():
            async with asyncio.timeout(self._acquire_timeout):
                await self._free.acquire()
        else:
            await self._free.acquire()  # returns at once: a slot is free
        try:
            while self._idle:
                conn, since = self._idle.pop()
                if conn.is_closed():
                    continue
                if time.monotonic() - since < self._check_after or await self._alive(conn):
                    return conn
                self.expire()
            return await self._connect()
        except BaseException:
            self._free.release()
            raise

    def release(self, conn: asyncpg.Connection, *, healthy: bool) -> None:
        """Give ``conn`` back: kept if ``healthy`` and idle outside a transaction, else closed."""
        try:
            reusable = healthy and not self._closed and not conn.is_closed()
            if reusable and not conn.is_in_transaction():
                self._idle.append((conn, time.monotonic()))
                return
            conn.terminate()
        finally:
            self._free.release()

    def expire(self) -> None:
        """Close every idle connection (the server restarted: they are all dead)."""
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.terminate()

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)
            conn.terminate()

    async def _alive(self, conn: asyncpg.Connection) -> bool:
        """Whether ``conn`` answers a round trip within ``ping_timeout``."""
        try:
            await conn.execute("SELECT 1", timeout=self._ping_timeout)
        except BaseException as exc:
            # Whatever went wrong, the connection is not to be trusted again.
            conn.terminate()
            if isinstance(exc, Exception):
                return False
            raise
        return True

    async def _connect(self) -> asyncpg.Connection:
        options: dict[str, int] = {}
        if self._statement_cache_size is not None:
            options["statement_cache_size"] = self._statement_cache_size
        conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout, **options)
        try:
            await self._setup(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn
