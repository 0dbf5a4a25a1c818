"""``Attempts``: what this process holds, from a job's claim until its outcome is written.

The one place that knows which attempts run here, how many slots are free, and why an attempt
was stopped. Producers reserve slots and launch attempts; the completer says when an outcome
is written; the reconciler and the heartbeat stop attempts through it; the completer asks it
whether more outcomes are coming. As a service it is the drain at shutdown: once the producers
have stopped, running attempts get ``grace`` seconds, and the rest are stopped and put back.
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi_equeue.backend import JobRow

logger = logging.getLogger(__name__)

StopReason = Literal["cancelled", "shutdown", "lost"]
"""Why an attempt was stopped: a user's cancel, a shutdown past its grace, or a lost lease
(the job was taken back, so this attempt's outcome no longer matters)."""

CANCEL_WAIT = 5.0
"""Seconds stopped attempts get to hand back their outcome; one that ignores cancellation is
left to the rescuer."""


@dataclass(eq=False)
class Held:
    """One attempt running here."""

    job: JobRow
    task: "asyncio.Task[None] | None" = None
    reason: StopReason | None = field(default=None)

    def stop_reason(self) -> StopReason | None:
        """Why the runtime stopped this attempt, if it did."""
        return self.reason


Run = Callable[[Held], Coroutine[Any, Any, None]]


class Attempts:
    """The attempts of one runtime: at most ``concurrency`` run at once."""

    name = "attempts"

    def __init__(self, concurrency: int, *, grace: float) -> None:
        self.concurrency = concurrency
        self.grace = grace
        self._running: dict[str, Held] = {}
        # Attempts replaced by a newer attempt of the same job (this worker was declared lost,
        # the job rescued and claimed here again): stopped, but running until they notice.
        self._abandoned: set[Held] = set()
        self._reserved = 0
        self._held: Counter[str] = Counter()
        self._freed: list[Callable[[], None]] = []
        self._written: list[Callable[[str], None]] = []
        self._queues: dict[str, str] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = asyncio.Event()
        self.claims_in_flight = 0
        self.claims_started = 0

    # -- slots ---------------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        """Slots taken by running attempts (abandoned ones included)."""
        return len(self._running) + len(self._abandoned)

    @property
    def free(self) -> int:
        """Slots neither taken nor reserved."""
        return self.concurrency - self.busy - self._reserved

    def reserve(self, wanted: int) -> int:
        """Reserve up to ``wanted`` free slots for a claim; how many were reserved."""
        granted = max(0, min(wanted, self.free))
        self._reserved += granted
        return granted

    def release(self, count: int) -> None:
        """Give back ``count`` reserved slots a claim did not fill."""
        if count > 0:
            self._reserved -= count
            self._notify_freed()

    def on_freed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a slot frees (an attempt ended, a reservation came back)."""
        self._freed.append(callback)

    def on_written(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with a job's queue once its outcome is written: in the database,
        the job is then no longer running, which is what a queue's limits count."""
        self._written.append(callback)

    @contextlib.contextmanager
    def claiming(self) -> Iterator[None]:
        """Mark a claim in flight: jobs it brings are held here before they are launched."""
        self.claims_started += 1
        self.claims_in_flight += 1
        try:
            yield
        finally:
            self.claims_in_flight -= 1

    # -- attempts ------------------------------------------------------------------------------

    def launch(self, job: JobRow, run: Run) -> None:
        """Run an attempt of ``job`` in a reserved slot; the job is held until ``written``."""
        self._reserved -= 1
        previous = self._running.get(job.id)
        if previous is not None:
            self._stop(previous, "lost")
            self._abandoned.add(previous)
        held = Held(job)
        held.task = asyncio.create_task(self._run(run, held), name=f"equeue-job-{job.id}")
        self._running[job.id] = held
        self._held[job.id] += 1
        self._queues[job.id] = job.queue
        self._idle.clear()

    def cancel(self, job_id: str, reason: StopReason) -> bool:
        """Stop a running attempt of ``job_id`` for ``reason``; ``False`` if none runs here."""
        held = self._running.get(job_id)
        if held is None or held.task is None or held.task.done():
            return False
        self._stop(held, reason)
        return True

    def cancel_all(self, reason: StopReason) -> None:
        """Stop every running attempt for ``reason``."""
        for job_id in tuple(self._running):
            self.cancel(job_id, reason)

    def hold(self, job: JobRow) -> None:
        """Hold ``job`` (not running here) until its outcome is ``written``."""
        self._held[job.id] += 1
        self._queues[job.id] = job.queue

    def written(self, job_id: str) -> None:
        """The outcome of an attempt of ``job_id`` is written (or there was none to write)."""
        if self._held[job_id] > 1:
            self._held[job_id] -= 1
            queue = self._queues.get(job_id)
        else:
            self._held.pop(job_id, None)
            queue = self._queues.pop(job_id, None)
        if queue is not None:
            for callback in self._written:
                callback(queue)

    @property
    def running(self) -> frozenset[str]:
        """The ids of the jobs running here now."""
        return frozenset(self._running)

    @property
    def held(self) -> frozenset[str]:
        """The ids of the jobs this process holds: running, or ended with an outcome to write."""
        return frozenset(self._held)

    def running_in(self, queue: str) -> int:
        """How many attempts of ``queue``'s jobs run here."""
        return sum(1 for held in self._running.values() if held.job.queue == queue)

    async def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for every running attempt to end; whether they did."""
        tasks = [h.task for h in (*self._running.values(), *self._abandoned) if h.task]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return not self.busy

    async def idle(self) -> None:
        """Return once no attempt runs here."""
        await self._idle.wait()

    # -- as a service: the drain at shutdown --------------------------------------------------

    async def start(self) -> None:
        """Nothing to prepare."""

    async def run(self) -> None:
        """Wait for ``stop``, then drain: ``grace`` seconds, then stop the rest and put them
        back."""
        await self._stopping.wait()
        if await self.wait(self.grace):
            return
        logger.info(
            "shutdown grace of %.1fs is over; putting %d running jobs back", self.grace, self.busy
        )
        self.cancel_all("shutdown")
        if not await self.wait(CANCEL_WAIT):
            logger.error(
                "%d attempts ignored their cancellation; the rescuer will take their jobs back",
                self.busy,
            )

    def stop(self) -> None:
        """Begin the drain."""
        self._stopping.set()

    # -- plumbing ------------------------------------------------------------------------------

    def _stop(self, held: Held, reason: StopReason) -> None:
        if held.reason is None:
            held.reason = reason
        if held.task is not None:
            held.task.cancel()

    async def _run(self, run: Run, held: Held) -> None:
        try:
            await run(held)
        finally:
            self._ended(held)

    def _ended(self, held: Held) -> None:
        # The slot is freed before the wake-up so that a producer sees it when it claims.
        if self._running.get(held.job.id) is held:
            del self._running[held.job.id]
        self._abandoned.discard(held)
        if not self.busy:
            self._idle.set()
        self._notify_freed()

    def _notify_freed(self) -> None:
        for callback in self._freed:
            callback()
