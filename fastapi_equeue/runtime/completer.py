"""The one writer of attempt outcomes: batched, shielded from cancellation, retried until they
land, and fenced in SQL.

While attempts run or a claim is out, an outcome waits up to ``linger`` seconds for more to
share its write (a commit costs the same for one row as for a hundred, and fewer commits leave
the database to the claims); while one batch is being written the next accumulates. When
nothing else is going on, an outcome is written at once. An outcome is never dropped while
the process lives: a database outage delays it. Each write is fenced on (job, attempt, worker,
processing), so a retry that lands twice, or a write for a job the rescuer took back, changes
nothing; a retry whose first try did land (the connection died after the commit) finds its
outcomes written, and says so rather than calling them discarded.
"""

import asyncio
import contextlib
import logging

from fastapi_equeue.config import COMPLETION_BATCH, COMPLETION_LINGER
from fastapi_equeue.runtime.attempts import Attempts
from fastapi_equeue.runtime.service import back_off
from fastapi_equeue.store import Attempt, Store

logger = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
FLUSH_WAIT = 30.0
"""Seconds a stopping completer keeps trying to write outcomes before leaving their jobs to the
rescuer (the worker is stopping: its heartbeat stops after this)."""


class Completer:
    """Persists the outcomes of one runtime's attempts."""

    name = "completer"

    def __init__(
        self,
        store: Store,
        attempts: Attempts,
        *,
        batch_size: int = COMPLETION_BATCH,
        linger: float = COMPLETION_LINGER,
        flush_wait: float | None = None,
    ) -> None:
        self._store = store
        self._attempts = attempts
        self._batch_size = batch_size
        self._linger = linger
        self._flush_wait = FLUSH_WAIT if flush_wait is None else flush_wait
        self._pending: list[Attempt] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._given_up = asyncio.Event()

    def submit(self, attempt: Attempt) -> None:
        """Queue an attempt's outcome for writing; returns at once."""
        if attempt.outcome is None:
            self._attempts.written(attempt.job.id)
            return
        self._pending.append(attempt)
        self._idle.clear()
        self._wake.set()

    async def flushed(self) -> None:
        """Return once every outcome submitted so far is written."""
        await self._idle.wait()

    async def start(self) -> None:
        """Nothing to prepare."""

    async def run(self) -> None:
        """Write outcomes as they come until stopped and nothing is left."""
        while True:
            if not self._pending:
                self._idle.set()
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather()
            batch = self._pending[: self._batch_size]
            del self._pending[: self._batch_size]
            # Shielded: cancelling the runtime must not tear a final state out of a job's life.
            if not await asyncio.shield(self._write(batch)):
                return

    def stop(self) -> None:
        """Finish writing what is pending (for up to ``flush_wait`` seconds), then return."""
        self._stopping = True
        self._wake.set()
        asyncio.get_running_loop().call_later(self._flush_wait, self._given_up.set)

    async def _gather(self) -> None:
        """Wait up to ``linger`` for a full batch, while running attempts may add to it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        while (
            len(self._pending) < self._batch_size
            and not self._stopping
            and (self._attempts.busy or self._attempts.claims_in_flight)
            and loop.time() < deadline
        ):
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()

    async def _write(self, batch: list[Attempt]) -> bool:
        """Write ``batch`` until it lands; ``False`` if the stop's patience ran out first."""
        failures = 0
        while True:
            try:
                await self._store.complete(batch, retried=failures > 0)
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    logger.warning(
                        "writing %d job outcomes failed (%s: %s); retrying",
                        len(batch),
                        type(exc).__name__,
                        exc,
                    )
            else:
                for attempt in batch:
                    self._attempts.written(attempt.job.id)
                return True
            await back_off(failures, base=0.05, cap=MAX_BACKOFF, stop=self._given_up)
            if self._given_up.is_set():
                logger.error(
                    "could not write %d job outcomes; the rescuer will take their jobs back",
                    len(batch) + len(self._pending),
                )
                return False
