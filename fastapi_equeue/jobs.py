"""The public job model: ``Job``, ``JobStatus``, ``Page``, and the opaque id and cursor codecs."""

import base64
import binascii
import json
import os
import time
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class JobStatus(StrEnum):
    """Where a job is in its life.

    ``queued`` and ``retrying`` jobs wait to be claimed (``retrying``: an attempt failed and another
    is scheduled); ``processing`` jobs run in a worker; ``completed``, ``failed`` (attempts used up)
    and ``cancelled`` are final.
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the job will not run again without a manual retry."""
        return self in _FINAL


_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobError(BaseModel):
    """One failed attempt."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    error: str
    traceback: str | None
    at: datetime


class Progress(BaseModel):
    """How far the running (or latest) attempt said it got: ``ctx.progress(fraction, message)``."""

    model_config = ConfigDict(frozen=True)

    fraction: float
    """From 0.0 to 1.0."""
    message: str | None
    at: datetime
    """When the attempt reported it (the queue's clock)."""


class Job(BaseModel):
    """A job as users see it, through the client and the REST API."""

    model_config = ConfigDict(frozen=True)

    id: str
    job_type: str
    queue: str
    status: JobStatus
    payload: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    last_error: str | None
    errors: list[JobError]
    progress: Progress | None = None
    """The latest progress its attempts reported, or ``None``."""
    depends_on: list[str] = []
    """The jobs it waits for: it starts once every one completed (see Chains)."""


class Page(BaseModel):
    """One page of ``QueueClient.list``: ``next_cursor`` fetches the next, ``None`` at the end."""

    items: list[Job]
    next_cursor: str | None


class QueueStats(BaseModel):
    """A snapshot of the queue: ``GET /jobs/stats`` and ``QueueClient.stats()``."""

    counts: dict[JobStatus, int]
    """Jobs per status, every status present."""
    queues: dict[str, dict[JobStatus, int]]
    """Jobs per queue and status (statuses with no job left out)."""
    oldest_queued_age: float | None
    """Seconds the oldest job that could run now has waited; ``None`` when none waits."""
    completed_last_minute: int
    failed_last_minute: int


def new_job_id() -> str:
    """A fresh id: a UUIDv7, so ids sort by creation time and index inserts stay local."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80 | rand & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def parse_job_id(job_id: object) -> str | None:
    """The canonical form of ``job_id``, or ``None`` if it cannot be one of ours."""
    if not isinstance(job_id, str) or len(job_id) > 64:
        return None
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return None


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """An opaque cursor for the keyset position just after this job."""
    raw = json.dumps([created_at.isoformat(), job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[datetime, str] | None:
    """The keyset position a cursor names, or ``None`` if it is not a cursor of ours."""
    if not isinstance(cursor, str) or len(cursor) > 512:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        at = datetime.fromisoformat(created)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
    canonical = parse_job_id(job_id)
    if canonical is None or at.tzinfo is None:
        return None
    return at, canonical
