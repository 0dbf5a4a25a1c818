"""Keeps a worker's view of its running jobs in step with the database's.

Two things can differ. A job cancelled while running is flagged in its row; the worker hears of
it by NOTIFY where there is one, and here otherwise (and as a backstop). And a claim whose
commit succeeded while its connection died leaves jobs marked as running on this worker that it
never received: nothing would ever run or rescue them (the worker is alive and beating), so they
are handed back here.
"""

import logging

from fastapi_equeue.backend import Backend, JobCompleteParams
from fastapi_equeue.runtime.completer import Completer
from fastapi_equeue.runtime.producer import Producer

logger = logging.getLogger(__name__)


class Reconciler:
    """Compares the database's running jobs of one worker with the producer's."""

    def __init__(
        self, backend: Backend, producer: Producer, completer: Completer, *, worker_id: str
    ) -> None:
        self._backend = backend
        self._producer = producer
        self._completer = completer
        self._worker_id = worker_id

    async def check(self) -> None:
        """One comparison: cancel what was cancelled, hand back what was never received."""
        claims_before = self._producer.claims_started
        held = await self._backend.job_processing_by_worker(self._worker_id)
        # Taken after the query: a job that finished meanwhile is either still unwritten (known)
        # or written (and the fenced hand-back below will not touch it).
        running = set(self._producer.running)
        known = running | self._completer.unwritten
        for job in held:
            if job.id in running and job.cancel_requested:
                self._producer.cancel(job.id, "cancelled")
        # A claim in flight (or one that landed during the query) may hold jobs the producer
        # has not started yet: judge orphans only across a quiet interval.
        if self._producer.claiming or self._producer.claims_started != claims_before:
            return
        orphans = [job for job in held if job.id not in known]
        if not orphans:
            return
        logger.warning(
            "handing back %d jobs claimed by worker %s but never received: %s",
            len(orphans),
            self._worker_id,
            ", ".join(job.id for job in orphans),
        )
        await self._backend.job_complete_many(
            [
                JobCompleteParams(
                    id=job.id, attempt=job.attempt, worker_id=self._worker_id, status="queued"
                )
                for job in orphans
            ]
        )
