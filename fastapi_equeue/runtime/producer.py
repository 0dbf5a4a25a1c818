"""The claim loop: claim as many jobs as there are free slots, run each, claim again.

It sleeps until a wake-up (a notification for one of its queues, or a slot freed by a finished
job) or ``poll_interval`` with jitter, whichever comes first, so a lost notification costs at
most one poll.
"""

import asyncio
import contextlib
import logging
import random

from fastapi_equeue.backend import EVERY_QUEUE, Backend, JobClaimParams, JobRow, Notification
from fastapi_equeue.config import Config
from fastapi_equeue.runtime.completer import Completer
from fastapi_equeue.runtime.executor import Attempt, Executor, StopReason

logger = logging.getLogger(__name__)

MAX_BACKOFF = 10.0
# A claim costs a round trip whether it brings one job or fifty. While jobs run, the producer
# waits up to this long for half its slots to be free before claiming for fewer.
GATHER_WINDOW = 0.002


class Producer:
    """Claims and runs jobs for one worker, at most ``concurrency`` at a time."""

    def __init__(
        self,
        backend: Backend,
        executor: Executor,
        completer: Completer,
        config: Config,
        *,
        worker_id: str,
        concurrency: int,
        queues: tuple[str, ...] | None,
        burst: bool = False,
    ) -> None:
        self._backend = backend
        self._executor = executor
        self._completer = completer
        self._poll_interval = config.poll_interval
        self._worker_id = worker_id
        self._concurrency = concurrency
        self._queues = queues
        self._burst = burst
        self._batch = max(1, concurrency // 2)
        self._running: dict[str, asyncio.Task[None]] = {}
        # Attempts replaced by a newer attempt of the same job (this worker was declared lost,
        # the job rescued and claimed here again): cancelled, but running until they notice.
        self._abandoned: set[asyncio.Task[None]] = set()
        self._reasons: dict[asyncio.Task[None], StopReason] = {}
        self._wake = asyncio.Event()
        self._claiming = True
        self.claimed_total = 0
        self.claims_started = 0
        self.claiming = False

    @property
    def running(self) -> tuple[str, ...]:
        """The ids of the jobs running now."""
        return tuple(self._running)

    def on_notification(self, notification: Notification) -> None:
        """Wake for new work in our queues; cancel our jobs that someone cancelled."""
        if notification.kind == "available":
            if self._queues is None or any(
                q == EVERY_QUEUE or q in self._queues for q in notification.values
            ):
                self._wake.set()
        elif notification.kind == "cancel":
            for job_id in notification.values:
                self.cancel(job_id, "cancelled")

    def cancel(self, job_id: str, reason: StopReason) -> bool:
        """Cancel a running job's attempt for ``reason``; ``False`` if it is not running here."""
        task = self._running.get(job_id)
        if task is None or task.done():
            return False
        self._stop(task, reason)
        return True

    def _stop(self, task: asyncio.Task[None], reason: StopReason) -> None:
        self._reasons.setdefault(task, reason)
        task.cancel()

    def cancel_all(self, reason: StopReason) -> None:
        """Cancel every running attempt for ``reason``."""
        for job_id in tuple(self._running):
            self.cancel(job_id, reason)

    def stop_claiming(self) -> None:
        """Claim nothing more; running jobs go on."""
        self._claiming = False
        self._wake.set()

    async def wait_running(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for the running jobs to finish."""
        tasks = (*self._running.values(), *self._abandoned)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def run(self) -> None:
        """Claim and dispatch until ``stop_claiming`` (or, in burst mode, until no job is due)."""
        failures = 0
        while self._claiming:
            self._wake.clear()
            free = self._concurrency - self._busy()
            if 0 < free < self._batch and self._busy():
                free = await self._gather_slots()
            claimed: list[JobRow] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    await self._back_off(exc, failures)
                    continue
                self.claimed_total += len(claimed)
                for job in claimed:
                    self._start(job)
            if self._burst and not claimed and not self._running:
                return
            if len(claimed) == free and free > 0:
                # Every slot was filled and more may be due: look again as soon as one frees.
                await asyncio.sleep(0)
                if self._busy() < self._concurrency:
                    continue
            await self._sleep()

    async def _claim(self, limit: int) -> list[JobRow]:
        self.claims_started += 1
        self.claiming = True
        try:
            return await self._backend.job_claim(
                JobClaimParams(worker_id=self._worker_id, limit=limit, queues=self._queues)
            )
        finally:
            self.claiming = False

    def _start(self, job: JobRow) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "job processing id=%s type=%s queue=%s attempt=%d",
                job.id,
                job.job_type,
                job.queue,
                job.attempts,
                extra={
                    "job_id": job.id,
                    "job_type": job.job_type,
                    "queue": job.queue,
                    "attempt": job.attempts,
                    "status": "processing",
                },
            )
        previous = self._running.get(job.id)
        if previous is not None and not previous.done():
            self._stop(previous, "lost")
            self._abandoned.add(previous)
        task = asyncio.create_task(self._attempt(job), name=f"equeue-job-{job.id}")
        self._running[job.id] = task

    async def _attempt(self, job: JobRow) -> None:
        this = asyncio.current_task()
        assert this is not None  # noqa: S101 - always true inside a task
        try:
            attempt: Attempt = await self._executor.run(job, lambda: self._reasons.get(this))
            self._completer.submit(attempt)
        finally:
            # The slot is freed before the wake-up so the producer sees it when it claims.
            if self._running.get(job.id) is this:
                del self._running[job.id]
            self._abandoned.discard(this)
            self._reasons.pop(this, None)
            self._wake.set()

    async def _gather_slots(self) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATHER_WINDOW
        free = self._concurrency - self._busy()
        while free < self._batch and self._busy() and self._claiming:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            free = self._concurrency - self._busy()
        return free

    def _busy(self) -> int:
        return len(self._running) + len(self._abandoned)

    async def _sleep(self) -> None:
        timeout = self._poll_interval * random.uniform(0.8, 1.0)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps the wait in a task of its
        # own, one more loop iteration between a wake-up and the claim it triggers.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _back_off(self, exc: Exception, failures: int) -> None:
        delay = min(MAX_BACKOFF, self._poll_interval * 2 ** (failures - 1)) * random.uniform(0.5, 1)
        if failures == 1 or failures % 10 == 0:
            logger.warning(
                "claiming jobs failed (%s: %s); retrying in %.2fs", type(exc).__name__, exc, delay
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped(), delay)

    async def _stopped(self) -> None:
        while self._claiming:
            self._wake.clear()
            await self._wake.wait()
