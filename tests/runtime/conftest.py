"""Fixtures of the runtime tests: a second database, and a worker that died holding a job.

``other_database_url`` is a second, empty database of the backend under test (another SQLite
file, or a new PostgreSQL database dropped afterwards). ``claim_for_dead_worker`` registers a
worker that will never beat again and claims a job for it, through the queue's backend: the
state a worker killed mid-job leaves behind.
"""

from collections.abc import Awaitable, Callable

import pytest

from fastapi_equeue import EQueue
from fastapi_equeue.backend import JobClaimParams, WorkerParams
from fastapi_equeue.jobs import new_job_id

ClaimForDeadWorker = Callable[[EQueue, str], Awaitable[str]]


@pytest.fixture
async def other_database_url(new_database: Callable[[str], Awaitable[str]]) -> str:
    """A second empty database of the backend under test, besides ``database_url``."""
    return await new_database("other")


@pytest.fixture
def claim_for_dead_worker() -> ClaimForDeadWorker:
    """Claim the job ``job_id`` (the only one due) for a registered worker that never beats
    again; return that worker's id. The queue must be connected."""

    async def claim(queue: EQueue, job_id: str) -> str:
        backend = queue._backend
        assert backend is not None, "connect the queue first"
        worker_id = new_job_id()
        await backend.worker_register(
            WorkerParams(id=worker_id, hostname="dead-host", pid=0, concurrency=1, queues=None)
        )
        job = await backend.job_get(job_id)
        assert job is not None
        claim = await backend.job_claim(
            JobClaimParams(worker_id=worker_id, queue=job.queue, limit=1)
        )
        assert [row.id for row in claim.jobs] == [job_id]
        return worker_id

    return claim
