"""``ChangeFeed``: one debounced signal, shared by every reader in this process, that jobs or
queues changed somewhere.

It listens to the backend's notifications (PostgreSQL's LISTEN/NOTIFY reaches every process;
SQLite's stay within one) and, where they do not cross processes (``listen_notify`` false),
also polls the backend's change marker. However many writes a burst brings, readers see at
most one change per ``interval``. The dashboard's live stream reads it; it runs only while
someone reads.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from fastapi_equeue.store import Store

logger = logging.getLogger(__name__)

DEBOUNCE = 0.5
"""Seconds between two signals at most: a burst of 10,000 jobs gives two per second."""
MARKER_POLL = 1.0
"""Seconds between two reads of the change marker, where notifications stay in one process."""
START_WAIT = 5.0
"""Seconds a new reader waits at most for the feed to be watching (the database may be down)."""
GRACE = 15.0
"""Seconds the feed goes on watching after its last reader left: a reader that comes back (a
stream that reopens) finds the version counted on, with nothing missed in between."""


class ChangeFeed:
    """A version number that moves, at most once per ``interval``, when jobs or queues change."""

    def __init__(
        self, store: Store, *, interval: float = DEBOUNCE, poll: float = MARKER_POLL
    ) -> None:
        self._store = store
        self._interval = interval
        self._poll = poll
        self._version = 0
        self._moved = asyncio.Event()
        self._dirty = asyncio.Event()
        self._readers = 0
        self._task: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()
        self._idle: asyncio.TimerHandle | None = None
        self._closed = False
        self.token = uuid.uuid4().hex[:12]
        """Names this feed: a reader that finds another token (a restarted server) knows that
        the versions it saw say nothing of what changed since."""

    @property
    def version(self) -> int:
        """How many changes were signalled so far."""
        return self._version

    @property
    def closed(self) -> bool:
        """The queue stopped: readers should end."""
        return self._closed

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator["ChangeFeed"]:
        """Read the feed; it watches the database while anyone reads. Every write after this
        enters is signalled."""
        self._readers += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            if self._task is None and not self._closed:
                self._watching.clear()
                self._task = asyncio.create_task(self._watch(), name="equeue-change-feed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watching.wait(), START_WAIT)
            yield self
        finally:
            self._readers -= 1
            if self._readers == 0 and self._task is not None:
                self._idle = asyncio.get_running_loop().call_later(GRACE, self._cancel)

    async def wait(self, seen: int, timeout: float) -> int:
        """The version once it is beyond ``seen``, or as it is after ``timeout`` seconds (or
        when the feed closes)."""
        if self._version == seen and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), timeout)
        return self._version

    async def close(self) -> None:
        """Stop watching and wake every reader, for good."""
        self._closed = True
        self._signal()
        await self._stop()

    def _signal(self) -> None:
        self._version += 1
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def _cancel(self) -> None:
        self._idle = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _stop(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        unsubscribe = self._store.notifier.subscribe(lambda _: self._dirty.set())
        try:
            try:
                await self._store.notifier.start()
            except Exception as exc:  # the database is down: the marker finds what changes
                logger.debug("change feed: not listening (%s)", type(exc).__name__)
            # The marker as it is now, before any wait: a write right after this is a change.
            marker = await self._read_marker(None)
            self._watching.set()
            while True:
                polling = not self._store.capabilities.listen_notify
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), self._poll if polling else None)
                if polling:
                    marker = await self._read_marker(marker)
                if self._dirty.is_set():
                    self._dirty.clear()
                    self._signal()
                    await asyncio.sleep(self._interval)
        finally:
            unsubscribe()

    async def _read_marker(self, last: int | None) -> int | None:
        try:
            marker = await self._store.change_marker()
        except Exception as exc:  # an outage: the next poll tries again
            logger.debug("change feed: marker unread (%s)", type(exc).__name__)
            return last
        if last is not None and marker != last:
            self._dirty.set()
        return marker
