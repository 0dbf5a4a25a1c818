"""The storage seam between the runtime and a database.

Internal: not covered by semver. ``Backend`` is implemented once per dialect in ``backends/``; the
runtime, the client and the API only ever talk to this Protocol. Every job-writing method takes an
optional ``conn`` so that a host's transaction can carry the write; with ``None`` the backend opens
and commits its own.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fastapi_equeue.clock import Clock
from fastapi_equeue.jobs import JobStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

JSON = Any
"""A value that ``json.dumps`` accepts: what payloads and results are made of."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond the common ground."""

    listen_notify: bool
    """Wake-ups, cancellations and completions reach other processes at once (else: polling)."""


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """How a backend connects and keeps time: everything it takes besides the URL."""

    clock: Clock | None = None
    """Where stored times come from; ``None``: the database's own clock (PostgreSQL, shared by
    every machine), or the system clock (SQLite)."""
    pool_size: int | None = None
    """Connections at most; ``None``: the dialect's default."""
    prepared_statements: bool = True
    """``False`` behind a pooler in transaction mode: no statement is prepared by name."""
    listen_url: str | None = None
    """Where to LISTEN, when the database URL goes through a pooler; ``None``: the same URL."""
    poll_only: bool = False
    """Listen nowhere: other processes' work is found by polling."""


@dataclass(frozen=True, slots=True)
class AttemptError:
    """What went wrong in one attempt, as stored in the job's error history."""

    attempt: int
    error: str
    traceback: str | None
    at: datetime
    worker_id: str | None = None


@dataclass(frozen=True, slots=True)
class JobRow:
    """One row of the jobs table, as every backend returns it."""

    id: str
    job_type: str
    queue: str
    status: JobStatus
    payload: dict[str, JSON]
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: JSON
    last_error: str | None
    errors: tuple[AttemptError, ...]
    idempotency_key: str | None
    worker_id: str | None
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class ProcessingJob:
    """A job the database holds as running on some worker."""

    id: str
    attempt: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class JobInsertParams:
    """One job to insert. ``run_at`` wins over ``delay`` (seconds from the database's now)."""

    id: str
    job_type: str
    queue: str
    payload: dict[str, JSON]
    priority: int
    max_attempts: int
    delay: float = 0.0
    run_at: datetime | None = None
    idempotency_key: str | None = None
    payload_json: str | None = None
    """``payload`` as JSON text, when the caller has encoded it already."""


@dataclass(frozen=True, slots=True)
class JobClaimParams:
    """Claim up to ``limit`` due jobs for ``worker_id`` from ``queues`` (``None``: every queue)."""

    worker_id: str
    limit: int
    queues: tuple[str, ...] | None = None


CompleteStatus = Literal["completed", "failed", "retrying", "cancelled", "queued"]


@dataclass(frozen=True, slots=True)
class JobCompleteParams:
    """The end of one attempt, fenced on (id, attempt, worker_id, status = processing).

    ``status`` ``queued`` puts an interrupted job back without counting the attempt; ``retrying``
    schedules it again ``retry_delay`` seconds from now; the others are final.
    """

    id: str
    attempt: int
    worker_id: str
    status: CompleteStatus
    result: JSON = None
    error: AttemptError | None = None
    retry_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class JobListParams:
    """A page of jobs, newest first, after the keyset position ``after`` (created_at, id)."""

    limit: int
    status: JobStatus | None = None
    job_type: str | None = None
    queue: str | None = None
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class WorkerParams:
    """A worker process as it registers itself."""

    id: str
    hostname: str
    pid: int
    concurrency: int
    queues: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class QueueStatsRow:
    """How many jobs one queue holds in one status, and how lively it is."""

    queue: str
    status: JobStatus
    count: int
    oldest_due_age: float | None = None
    """Seconds the oldest job that could run (queued or retrying, due) has waited."""
    finished_last_minute: int = 0


NotificationKind = Literal["available", "cancel", "done"]

EVERY_QUEUE = "*"
"""An ``available`` notification for this queue name wakes every producer (after a reconnect)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """A wake-up: jobs available in a queue, a running job to cancel, or jobs that finished."""

    kind: NotificationKind
    values: tuple[str, ...]


Listener = Callable[[Notification], None]


class Notifier(Protocol):
    """Delivers notifications to this process's listeners, from this and (maybe) other processes."""

    async def start(self) -> None:
        """Begin listening; returns once notifications flow (or polling is the fallback)."""

    async def stop(self) -> None:
        """Stop listening and release the connection."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every notification until the returned function is called."""

    def publish_local(self, notification: Notification) -> None:
        """Deliver ``notification`` to this process's listeners only."""


class Backend(Protocol):
    """What the runtime needs from a database. Methods and query names are the same strings."""

    capabilities: Capabilities
    notifier: Notifier

    async def open(self) -> None:
        """Connect (lazily: connections open on first use)."""

    async def close(self) -> None:
        """Dispose of every connection."""

    async def migrate(self) -> list[str]:
        """Apply pending migrations under the dialect's lock; return the names applied."""

    def migration_script(self) -> str:
        """Every migration as one SQL script, for teams that run their own migration tool."""

    async def job_cancel(self, job_id: str) -> JobRow | None:
        """Cancel a queued or retrying job, or flag a processing one; ``None`` if neither."""

    async def job_claim(self, params: JobClaimParams) -> list[JobRow]:
        """Mark up to ``params.limit`` due jobs processing for the worker, by priority."""

    async def job_complete_many(self, params: Sequence[JobCompleteParams]) -> set[str]:
        """Write attempt outcomes in one round trip; return the ids the fence let through."""

    async def job_get(self, job_id: str, *, conn: "AsyncConnection | None" = None) -> JobRow | None:
        """One job by id."""

    async def job_get_by_keys(
        self, keys: Sequence[str], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """The jobs holding these idempotency keys."""

    async def job_insert_many(
        self, params: Sequence[JobInsertParams], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """Insert jobs in one round trip; rows whose idempotency key exists are skipped."""

    async def job_list(self, params: JobListParams) -> list[JobRow]:
        """A page of jobs, newest first."""

    async def job_processing_by_worker(self, worker_id: str) -> list[ProcessingJob]:
        """The jobs the database holds as running on ``worker_id``."""

    async def job_rescue_stalled(self, stalled_after: float) -> list[JobRow]:
        """Put back (or fail) processing jobs whose worker has been silent for ``stalled_after``."""

    async def job_retry(self, job_id: str) -> JobRow | None:
        """Queue a failed or cancelled job again with attempts reset; ``None`` if neither."""

    async def queue_stats(self) -> list[QueueStatsRow]:
        """Job counts per queue and status."""

    async def worker_deregister(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly."""

    async def worker_heartbeat(self, worker_id: str) -> bool:
        """Prove the worker alive; ``False`` if its row is gone (it was declared lost)."""

    async def worker_register(self, params: WorkerParams) -> None:
        """Record a starting worker process."""
