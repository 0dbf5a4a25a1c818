"""LISTEN on one dedicated asyncpg connection, proven to deliver, re-established after any loss.

A listener that died silently is the classic failure of LISTEN-based queues, and a listener
that is alive but hears nothing is its quieter twin: behind a pooler in transaction mode, the
LISTEN lands on a server connection that is handed to someone else after the statement. So the
connection is not trusted, it is tested: on connecting, and every ``probe_interval`` after,
a NOTIFY with a fresh token is sent on another connection (the backend's own), and it must come
back on this one within ``probe_timeout``. A probe that does not come back, a ping that fails,
or a connection that closes, each ends the connection; it is listened again on a fresh one,
with capped, jittered backoff, one log line per try.

Producers poll at ``poll_interval`` regardless, so a lost notification delays a job, never
strands it; after a reconnect every listener is told that any queue may have work (the
notifications sent while the connection was down are gone).
"""

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import get_args

import asyncpg

from fastapi_equeue.backend import EVERY_QUEUE, Notification, NotificationKind
from fastapi_equeue.backends._notify import LocalNotifier

logger = logging.getLogger(__name__)

CHANNEL = "equeue"
PROBE = "probe"
_KINDS = frozenset(get_args(NotificationKind))

Probe = Callable[[str], Awaitable[object]]
"""Sends ``NOTIFY equeue, 'probe:<token>'`` on a connection other than the listening one."""


class ListenerDeaf(ConnectionError):
    """The listening connection is up, but notifications do not reach it."""


class PostgresNotifier(LocalNotifier):
    """Delivers NOTIFY messages on the ``equeue`` channel to this process's listeners."""

    def __init__(
        self,
        dsn: str,
        probe: Probe,
        *,
        probe_interval: float = 10.0,
        probe_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self._probe = probe
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._probes: dict[str, asyncio.Event] = {}

    @property
    def connected(self) -> bool:
        """Whether the listening connection is up and was last found delivering."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start listening; waits briefly for the first connection, then goes on regardless."""
        if self._task is not None:
            return
        self._connected = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="equeue-notifier")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._connected.wait(), self._connect_timeout + self._probe_timeout
            )

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
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                failures = 0 if self._connected.is_set() else failures + 1
                delay = min(self._max_backoff, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                logger.warning(
                    "%s; workers poll meanwhile; listening again in %.1fs",
                    _describe(exc),
                    delay,
                )
                self._connected.clear()
                await asyncio.sleep(delay)
            finally:
                self._connected.clear()

    async def _listen_once(self) -> None:
        # Nothing prepared by name: behind a pooler in transaction mode, LISTEN would otherwise
        # leave a named statement on a server connection that others then use.
        conn = await asyncpg.connect(
            self._dsn, timeout=self._connect_timeout, statement_cache_size=0
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._on_message)
            await self._check(conn)
            self._connected.set()
            # Anything sent while we were not listening is lost: let producers look for work.
            self.publish_local(Notification("available", (EVERY_QUEUE,)))
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._probe_interval)
                if not lost.is_set():
                    await self._check(conn)
            raise ConnectionResetError("the listen connection was closed")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)
            conn.terminate()

    async def _check(self, conn: asyncpg.Connection) -> None:
        """Prove that a NOTIFY sent elsewhere reaches ``conn``; raise ``ListenerDeaf`` if not.

        When the probe cannot be sent (the other connections are busy or down), a ping proves
        at least that ``conn`` is alive.
        """
        token = secrets.token_hex(8)
        heard = self._probes[token] = asyncio.Event()
        try:
            try:
                await asyncio.wait_for(self._probe(token), self._connect_timeout)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                await conn.fetchval("SELECT 1", timeout=self._connect_timeout)
                return
            try:
                await asyncio.wait_for(heard.wait(), self._probe_timeout)
            except TimeoutError:
                raise ListenerDeaf(
                    f"a NOTIFY on channel {CHANNEL!r} did not reach the listen connection within "
                    f"{self._probe_timeout:g}s (behind a pooler in transaction mode, LISTEN needs "
                    "EQueue(listen_url=<a direct server URL>), or poll_only=True)"
                ) from None
        finally:
            del self._probes[token]

    def _on_message(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind, _, values = payload.partition(":")
        if kind == PROBE:
            heard = self._probes.get(values)
            if heard is not None:
                heard.set()
            return
        if kind not in _KINDS or not values:
            return
        self.publish_local(Notification(kind, tuple(values.split(","))))  # type: ignore[arg-type]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ListenerDeaf):
        return str(exc)
    return f"listen connection lost ({type(exc).__name__}: {exc})"
