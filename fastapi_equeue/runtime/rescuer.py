"""Takes back jobs whose worker went silent. Safe to run from every worker at once."""

import logging

from fastapi_equeue.backend import Backend

logger = logging.getLogger(__name__)


class Rescuer:
    """Runs the stalled-job rescue; the SQL statement is idempotent and skips locked rows."""

    def __init__(self, backend: Backend, *, stalled_after: float) -> None:
        self._backend = backend
        self._stalled_after = stalled_after

    async def rescue(self) -> None:
        """One sweep: every processing job of a lost worker goes back (or fails)."""
        for job in await self._backend.job_rescue_stalled(self._stalled_after):
            logger.warning(
                "job rescued from a lost worker id=%s type=%s queue=%s attempt=%d now=%s",
                job.id,
                job.job_type,
                job.queue,
                job.attempts,
                job.status,
                extra={
                    "job_id": job.id,
                    "job_type": job.job_type,
                    "queue": job.queue,
                    "attempt": job.attempts,
                    "status": str(job.status),
                },
            )
