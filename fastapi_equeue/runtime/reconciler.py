"""Keeps this worker's attempts in step with what the database holds for it.

Two things can differ. A job cancelled while running is flagged in its row: the worker hears
of it by NOTIFY where there is one, and here otherwise (and as a backstop). And a claim whose
commit succeeded while its connection died leaves jobs marked as running on this worker that
it never received: nothing would ever run or rescue them (the worker is alive and beating), so
they are handed back, through the completer like every outcome.
"""

from collections.abc import Callable

from fastapi_equeue.backend import JobCompleteParams, Notification
from fastapi_equeue.clock import Clock
from fastapi_equeue.runtime.attempts import Attempts
from fastapi_equeue.runtime.completer import Completer
from fastapi_equeue.runtime.service import Periodic
from fastapi_equeue.store import Attempt, Store


class Reconciler(Periodic):
    """Cancels the attempts someone cancelled, and hands back jobs never received."""

    name = "reconciler"

    def __init__(
        self,
        store: Store,
        attempts: Attempts,
        completer: Completer,
        *,
        worker_id: str,
        interval: float,
        clock: Clock,
    ) -> None:
        super().__init__(interval=interval, clock=clock)
        self._store = store
        self._attempts = attempts
        self._completer = completer
        self._worker_id = worker_id
        self._unsubscribe: Callable[[], None] = lambda: None

    async def start(self) -> None:
        """Hear cancellations as they are requested (where the backend notifies)."""
        self._unsubscribe = self._store.notifier.subscribe(self._on_notification)

    async def finish(self) -> None:
        """Stop hearing cancellations."""
        self._unsubscribe()

    async def tick(self) -> None:
        """One comparison: cancel what was cancelled, hand back what was never received."""
        claims_before = self._attempts.claims_started
        held = await self._store.processing_by_worker(self._worker_id)
        # Read after the query: a job that finished meanwhile is either still held (its
        # outcome unwritten) or written, and the fenced hand-back below will not touch it.
        running, known = self._attempts.running, self._attempts.held
        for job in held:
            if job.id in running and job.cancel_requested:
                self._attempts.cancel(job.id, "cancelled")
        # A claim in flight (or one that landed during the query) may hold jobs not launched
        # yet: judge orphans only across a quiet interval.
        if self._attempts.claims_in_flight or self._attempts.claims_started != claims_before:
            return
        for job in held:
            if job.id not in known:
                params = JobCompleteParams(
                    id=job.id, attempt=job.attempts, worker_id=self._worker_id, status="queued"
                )
                self._attempts.hold(job)
                self._completer.submit(Attempt(job, params, 0.0, "not_received"))

    def _on_notification(self, notification: Notification) -> None:
        if notification.kind == "cancel":
            for job_id in notification.values:
                self._attempts.cancel(job_id, "cancelled")
