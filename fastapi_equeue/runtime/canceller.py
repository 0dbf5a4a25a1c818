"""Finds this worker's jobs that were cancelled while running, when no notification said so."""

from fastapi_equeue.backend import Backend
from fastapi_equeue.runtime.producer import Producer


class CancelWatcher:
    """Asks the database which running jobs have a cancel request: the fallback to NOTIFY."""

    def __init__(self, backend: Backend, producer: Producer) -> None:
        self._backend = backend
        self._producer = producer

    async def check(self) -> None:
        """One look: cancel every running attempt whose job was asked to cancel."""
        running = self._producer.running
        if not running:
            return
        for job_id in await self._backend.job_cancel_requested(running):
            self._producer.cancel(job_id, "cancelled")
