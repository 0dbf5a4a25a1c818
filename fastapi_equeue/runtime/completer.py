"""Writes attempt outcomes in batches, shielded from cancellation and retried until they land.

While other jobs are running, an outcome waits up to ``linger`` seconds for more to share its
write (a commit costs the same for one row as for a hundred, and fewer commits leave the
database to the claims); while one batch is being written the next accumulates. When nothing
else runs, an outcome is written at once. An outcome is never dropped while the
process lives: a database outage delays it. Each write is fenced in SQL, so a retry that lands
twice, or a write for a job the rescuer took back, changes nothing.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from fastapi_equeue.backend import Backend
from fastapi_equeue.config import COMPLETION_BATCH, COMPLETION_LINGER
from fastapi_equeue.runtime.executor import Attempt

logger = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
_MESSAGES = {
    "completed": "job completed",
    "failed": "job failed",
    "retrying": "job retrying",
    "cancelled": "job cancelled",
    "queued": "job interrupted by shutdown, queued again",
}


class Completer:
    """Persists ``Attempt`` outcomes for one runtime."""

    def __init__(
        self,
        backend: Backend,
        *,
        batch_size: int = COMPLETION_BATCH,
        linger: float = COMPLETION_LINGER,
        others_running: Callable[[], bool] = lambda: False,
    ) -> None:
        self._backend = backend
        self._batch_size = batch_size
        self._linger = linger
        self._others_running = others_running
        self._pending: list[Attempt] = []
        self._unwritten: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    def submit(self, attempt: Attempt) -> None:
        """Queue an attempt's outcome for writing; returns at once."""
        if attempt.outcome is None:
            return
        self._pending.append(attempt)
        self._unwritten.add(attempt.job.id)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Write outcomes as they come until ``stop`` and nothing is left."""
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
            await asyncio.shield(self._write(batch))

    async def _gather(self) -> None:
        """Wait up to ``linger`` for a full batch, while running jobs may still add to it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        while (
            len(self._pending) < self._batch_size
            and not self._stopping
            and self._others_running()
            and loop.time() < deadline
        ):
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()

    @property
    def unwritten(self) -> set[str]:
        """Ids of jobs whose outcome is submitted but not yet written."""
        return set(self._unwritten)

    async def flushed(self) -> None:
        """Return once every outcome submitted so far is written."""
        await self._idle.wait()

    def stop(self) -> None:
        """Finish writing what is pending, then let ``run`` return."""
        self._stopping = True
        self._wake.set()

    async def _write(self, batch: list[Attempt]) -> None:
        failures = 0
        while True:
            try:
                written = await self._backend.job_complete_many(
                    [a.outcome for a in batch if a.outcome is not None]
                )
            except Exception as exc:
                failures += 1
                delay = min(MAX_BACKOFF, 0.05 * 2**failures) * random.uniform(0.5, 1.0)
                if failures == 1 or failures % 20 == 0:
                    logger.warning(
                        "writing %d job outcomes failed (%s: %s); retrying in %.2fs",
                        len(batch),
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                await asyncio.sleep(delay)
                continue
            self._unwritten.difference_update(a.job.id for a in batch)
            _log(batch, written)
            return


def _log(batch: list[Attempt], written: set[str]) -> None:
    for attempt in batch:
        job, outcome = attempt.job, attempt.outcome
        if outcome is None:
            continue
        if job.id not in written:
            logger.warning(
                "job outcome discarded: the job was taken back from this worker "
                "id=%s type=%s queue=%s attempt=%d",
                job.id,
                job.job_type,
                job.queue,
                outcome.attempt,
            )
            continue
        level = logging.WARNING if outcome.status in ("failed", "retrying") else logging.INFO
        if not logger.isEnabledFor(level):
            continue
        message = _MESSAGES[outcome.status]
        error = f" error={outcome.error.error!r}" if outcome.error else ""
        logger.log(
            level,
            "%s id=%s type=%s queue=%s attempt=%d duration=%.3fs%s",
            message,
            job.id,
            job.job_type,
            job.queue,
            outcome.attempt,
            attempt.duration,
            error,
            extra={
                "job_id": job.id,
                "job_type": job.job_type,
                "queue": job.queue,
                "attempt": outcome.attempt,
                "duration": attempt.duration,
                "status": outcome.status,
            },
        )
