"""``Progress``: one attempt's progress reports, from the task (in any thread) to the database.

Writes are fenced by attempt, like outcomes, and throttled: at most one every
``PROGRESS_INTERVAL`` seconds per job. The first report is written at once; a report within
the interval after a write waits for the interval's end, and later ones replace it; when the
attempt ends, a waiting report is written before its outcome, so the last report always lands
while the job is still ``processing``. A write that fails is logged and never fails the
attempt.
"""

import asyncio
import contextlib
import logging
import math

from fastapi_equeue.backend import JobProgressParams, JobRow
from fastapi_equeue.clock import Clock
from fastapi_equeue.store import Store

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0
"""Seconds (real time) from one progress write of a job to the next."""

FLUSH_TIMEOUT = 5.0
"""Seconds the last report of an ended attempt may take to write before its outcome goes on
without it."""

Value = tuple[float, str | None]


class Progress:
    """The progress of one attempt. Built on the event loop, by the attempt it belongs to."""

    def __init__(
        self,
        store: Store,
        job: JobRow,
        *,
        worker_id: str,
        clock: Clock,
        interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self._store = store
        self._job = job
        self._worker_id = worker_id
        self._clock = clock
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._pending: Value | None = None
        self._next_write = -math.inf
        self._writer: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def report(self, fraction: float, message: str | None) -> None:
        """Take a validated report, from the loop or from any other thread."""
        if _running_loop() is self._loop:
            self._take((fraction, message))
            return
        # A plain `def` task's thread: the loop takes it in call order, and before the
        # thread's return, which reaches the loop the same way.
        with contextlib.suppress(RuntimeError):  # the loop is closed: the attempt is long over
            self._loop.call_soon_threadsafe(self._take, (fraction, message))

    async def close(self) -> None:
        """Write the waiting report, if any, and end: the attempt is over. Later reports (a
        thread the attempt left running, say) are dropped."""
        self._closing.set()
        writer = self._writer
        if writer is None or writer.done():
            return
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await writer
        except TimeoutError:
            logger.warning(
                "the last progress of job %s (queue %s) was not written within %.0fs",
                self._job.id,
                self._job.queue,
                FLUSH_TIMEOUT,
            )

    def abort(self) -> None:
        """End without writing what waits: no write outlives the attempt."""
        self._closing.set()
        if self._writer is not None:
            self._writer.cancel()

    def _take(self, value: Value) -> None:
        if self._closing.is_set():
            return
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(
                self._write_all(value), name=f"equeue-progress-{self._job.id}"
            )
        else:
            self._pending = value  # the writer takes the latest when its interval is over

    async def _write_all(self, value: Value | None) -> None:
        while value is not None:
            wait = self._next_write - self._loop.time()
            if wait > 0 and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._closing.wait()  # the attempt's end writes at once
            self._next_write = self._loop.time() + self._interval
            await self._write(*value)
            value, self._pending = self._pending, None

    async def _write(self, fraction: float, message: str | None) -> None:
        params = JobProgressParams(
            id=self._job.id,
            attempt=self._job.attempts,
            worker_id=self._worker_id,
            fraction=fraction,
            message=message,
            at=self._clock.now(),
        )
        try:
            await self._store.progress(self._job, params)
        except Exception:
            logger.warning(
                "could not store the progress of job %s (queue %s)",
                self._job.id,
                self._job.queue,
                exc_info=True,
            )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
