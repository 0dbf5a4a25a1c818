"""Registers this worker before anything is claimed, proves it alive every
``heartbeat_interval``, and removes it once everything it held is handed back.

The beats run on the event loop, and a task that blocks the loop (a CPU-bound ``async def``,
a synchronous client called from one) would stop them: the worker would be declared lost
and its jobs run twice. So a thread watches the loop. While the loop has not come back for
longer than a beat, the thread beats in its place, on a connection of its own, which it
opens only then. It does so for at most ``blocked_limit`` seconds of one block
(``BLOCKED_LIMIT_FACTOR`` times ``stalled_after``: 5 minutes by default): a loop that never
comes back stops being covered, and its jobs are taken back ``stalled_after`` later.
"""

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from fastapi_equeue.backend import Backend, WorkerParams
from fastapi_equeue.clock import Clock
from fastapi_equeue.runtime.attempts import Attempts
from fastapi_equeue.runtime.service import Periodic
from fastapi_equeue.store import Store

logger = logging.getLogger(__name__)

BLOCKED_LIMIT_FACTOR = 10
"""How many times ``stalled_after`` a blocked event loop is covered by the heartbeat thread."""
BEAT_TIMEOUT = 2.0
"""Seconds a beat from the thread may take (at least a heartbeat interval)."""


class Heartbeat(Periodic):
    """One worker's row in the workers table, kept fresh.

    If a beat finds the row gone, the worker was declared lost (it missed ``stalled_after``,
    say under a stopped process) and its jobs were taken back: its running attempts are
    abandoned here, and the worker registers again.
    """

    name = "heartbeat"

    def __init__(
        self,
        store: Store,
        attempts: Attempts,
        *,
        worker_id: str,
        queues: tuple[str, ...] | None,
        interval: float,
        clock: Clock,
        cover: "BlockedLoopCover | None" = None,
    ) -> None:
        super().__init__(interval=interval, clock=clock)
        self._store = store
        self._attempts = attempts
        self._cover = cover
        self._params = WorkerParams(
            id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=attempts.concurrency,
            queues=queues,
        )

    async def start(self) -> None:
        """Record the worker, once the database is reached: a claim requires its row."""
        await self._store.wait_ready()
        await self._store.register(self._params)
        if self._cover is not None:
            self._cover.start()

    async def tick(self) -> None:
        """Refresh the worker's row; re-register after being declared lost."""
        if await self._store.beat(self._params.id):
            return
        self._attempts.cancel_all("lost")
        await self._store.register(self._params)

    async def finish(self) -> None:
        """Remove the worker's row, unless attempts still run (the rescuer then takes them)."""
        if self._cover is not None:
            await asyncio.to_thread(self._cover.stop)
        if not self._attempts.busy:
            await self._store.deregister(self._params.id)


class BlockedLoopCover:
    """A thread that beats for ``worker_id`` while the event loop it watches is blocked.

    The loop proves itself free every ``interval / 2`` seconds (a callback, real time). The
    thread looks every ``interval``: once the loop has been silent for more than two intervals
    and less than ``limit``, it beats on ``open_backend()``'s connection, opened on first
    need. A beat that finds the row gone does nothing here: the loop's own heartbeat sees it
    when the loop comes back, and abandons what was taken back.
    """

    def __init__(
        self,
        open_backend: Callable[[], Backend],
        *,
        worker_id: str,
        interval: float,
        limit: float,
    ) -> None:
        self._open_backend = open_backend
        self._worker_id = worker_id
        self._interval = interval
        self._limit = limit
        self._seen = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start watching the running loop, and the thread."""
        self._seen = time.monotonic()
        self._watch = asyncio.get_running_loop().call_later(self._interval / 2, self._loop_free)
        self._thread = threading.Thread(
            target=self._run, name=f"equeue-heartbeat-{self._worker_id[-8:]}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (it closes its connection); blocking."""
        self._stop.set()
        if self._watch is not None:
            self._watch.cancel()
        if self._thread is not None:
            self._thread.join()

    def _loop_free(self) -> None:
        self._seen = time.monotonic()
        self._watch = asyncio.get_running_loop().call_later(self._interval / 2, self._loop_free)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        backend: Backend | None = None
        failures = 0
        covering = gave_up = False
        try:
            while not self._stop.wait(self._interval):
                blocked = time.monotonic() - self._seen
                if blocked <= 2 * self._interval:  # a beat late: blocked, not merely busy
                    covering = gave_up = False
                    continue
                if blocked >= self._limit:
                    if not gave_up:
                        logger.error(
                            "the event loop of worker %s has been blocked for %.0fs; no longer "
                            "proving the worker alive: its jobs will be taken back",
                            self._worker_id,
                            blocked,
                        )
                        gave_up = True
                    continue
                try:
                    if backend is None:
                        backend = self._open_backend()
                        loop.run_until_complete(backend.open())
                    loop.run_until_complete(
                        asyncio.wait_for(
                            backend.worker_heartbeat(self._worker_id),
                            max(self._interval, BEAT_TIMEOUT),
                        )
                    )
                except Exception as exc:
                    # Closed to the end, here: a beat cut short must not leave a transaction
                    # open (on SQLite it would hold the file's write lock).
                    if backend is not None:
                        with contextlib.suppress(Exception):
                            loop.run_until_complete(backend.close())
                        backend = None
                    failures += 1
                    if failures == 1 or failures % 10 == 0:
                        logger.warning(
                            "heartbeat for a blocked event loop failed (%s: %s)",
                            type(exc).__name__,
                            exc,
                        )
                else:
                    failures = 0
                    if not covering:
                        covering = True
                        logger.warning(
                            "the event loop of worker %s has been blocked for %.1fs (a task "
                            "that does not await?); its heartbeat goes on from a thread",
                            self._worker_id,
                            blocked,
                        )
        finally:
            if backend is not None:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(backend.close())
            loop.close()
