"""LISTEN on one dedicated asyncpg connection, kept alive, re-established after any loss.

A listener that died silently is the classic failure of LISTEN-based queues: this one pings its
connection every ``ping_interval`` and reconnects with capped, jittered backoff. Producers poll
at ``poll_interval`` regardless, so a lost notification delays a job, never strands it; after a
reconnect every listener is told that any queue may have work (the notifications sent while
the connection was down are gone).
"""

import asyncio
import contextlib
import logging
import random
from typing import get_args

import asyncpg

from fastapi_equeue.backend import EVERY_QUEUE, Notification, NotificationKind
from fastapi_equeue.backends._notify import LocalNotifier

logger = logging.getLogger(__name__)

CHANNEL = "equeue"
_KINDS = frozenset(get_args(NotificationKind))


class PostgresNotifier(LocalNotifier):
    """Delivers NOTIFY messages on the ``equeue`` channel to this process's listeners."""

    def __init__(
        self,
        dsn: str,
        ping_query: str,
        *,
        ping_interval: float = 10.0,
        connect_timeout: float = 10.0,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self._ping_query = ping_query
        self._ping_interval = ping_interval
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        """Whether the listening connection is up right now."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start listening; waits briefly for the first connection, then goes on regardless."""
        if self._task is not None:
            return
        self._connected = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="equeue-notifier")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._connect_timeout)

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                failures += 1
                delay = min(self._max_backoff, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                if failures == 1 or failures % 10 == 0:
                    logger.warning("listen connection lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                self._connected.clear()

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._on_message)
            self._connected.set()
            # Anything sent while we were not listening is lost: let producers look for work.
            self.publish_local(Notification("available", (EVERY_QUEUE,)))
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._ping_interval)
                if not lost.is_set():
                    await conn.fetchval(self._ping_query, timeout=self._connect_timeout)
            raise ConnectionResetError("the listen connection was closed")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)

    def _on_message(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind, _, values = payload.partition(":")
        if kind not in _KINDS or not values:
            return
        self.publish_local(Notification(kind, tuple(values.split(","))))  # type: ignore[arg-type]
