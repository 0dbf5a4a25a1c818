"""Seeding rows for the backend tests: a job factory and the few steps tests build on (a
registered worker, a claimed job, an attempt's outcome), all through the backend itself."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi_equeue.backend import (
    AttemptError,
    Backend,
    JobClaimParams,
    JobCompleteParams,
    JobInsertParams,
    JobRow,
    WorkerParams,
)
from fastapi_equeue.jobs import new_job_id

# Stored times come from the database (PostgreSQL) or the process (SQLite); both run here.
SLACK = timedelta(seconds=2)
DEADLINE = 5.0


def job(**overrides: Any) -> JobInsertParams:
    """A job to insert, with plain defaults that a test overrides where it matters."""
    values: dict[str, Any] = {
        "id": new_job_id(),
        "job_type": "send_email",
        "queue": "default",
        "payload": {"recipient_email": "a@example.com"},
        "priority": 0,
        "max_attempts": 3,
    }
    values.update(overrides)
    return JobInsertParams(**values)


def new_worker_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def error_for(attempt: int, message: str = "ValueError: boom") -> AttemptError:
    return AttemptError(
        attempt=attempt,
        error=message,
        traceback='Traceback (most recent call last):\n  File "x.py"\nValueError: boom',
        at=utcnow(),
    )


async def insert_one(backend: Backend, **overrides: Any) -> JobRow:
    rows = await backend.job_insert_many([job(**overrides)])
    assert len(rows) == 1
    return rows[0]


async def registered(backend: Backend, worker_id: str | None = None) -> str:
    """A worker id with a row in the workers table: only a registered worker claims."""
    params = worker(worker_id)
    await backend.worker_register(params)
    return params.id


async def start_job(backend: Backend, worker_id: str | None = None, **overrides: Any) -> JobRow:
    """Insert a job in a queue of its own and claim it: a ``processing`` row."""
    overrides.setdefault("queue", f"q-{uuid.uuid4().hex[:8]}")
    inserted = await insert_one(backend, **overrides)
    claim = await backend.job_claim(
        JobClaimParams(
            worker_id=await registered(backend, worker_id), queue=inserted.queue, limit=1
        )
    )
    assert [row.id for row in claim.jobs] == [inserted.id]
    return claim.jobs[0]


async def start_lost_job(backend: Backend, **overrides: Any) -> JobRow:
    """A ``processing`` row whose worker has no row any more (declared lost elsewhere)."""
    row = await start_job(backend, **overrides)
    assert row.worker_id is not None
    await backend.worker_deregister(row.worker_id)
    return row


def outcome(row: JobRow, status: Any, **overrides: Any) -> JobCompleteParams:
    """The end of ``row``'s current attempt, as its worker would report it."""
    assert row.worker_id is not None
    values: dict[str, Any] = {
        "id": row.id,
        "attempt": row.attempts,
        "worker_id": row.worker_id,
        "status": status,
    }
    values.update(overrides)
    return JobCompleteParams(**values)


async def get(backend: Backend, job_id: str) -> JobRow:
    row = await backend.job_get(job_id)
    assert row is not None
    return row


async def claim_ids(backend: Backend, limit: int = 100, queue: str = "default") -> list[str]:
    claim = await backend.job_claim(
        JobClaimParams(worker_id=await registered(backend), queue=queue, limit=limit)
    )
    return [row.id for row in claim.jobs]


async def rescue(backend: Backend, stalled_after: float = 30.0) -> list[JobRow]:
    """The jobs a rescue by some live worker takes back."""
    return (await backend.job_rescue_stalled(stalled_after, new_worker_id())).jobs


def sorted_ids(count: int) -> list[str]:
    return sorted(new_job_id() for _ in range(count))


def worker(worker_id: str | None = None) -> WorkerParams:
    return WorkerParams(
        id=worker_id or new_worker_id(),
        hostname="test-host",
        pid=4242,
        concurrency=4,
        queues=("default",),
    )
