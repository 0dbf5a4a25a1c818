"""The storage seam between the runtime and a database.

Internal: not covered by semver. ``Backend`` is implemented once per dialect in ``backends/``; the
runtime, the client and the API only ever talk to this Protocol. Every job-writing method takes an
optional ``conn`` so that a host's transaction can carry the write; with ``None`` the backend opens
and commits its own.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, get_type_hints

from fastapi_equeue.clock import Clock
from fastapi_equeue.config import redacted_repr
from fastapi_equeue.jobs import Job, JobError, JobStatus, Progress

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

    def __repr__(self) -> str:
        return redacted_repr(self)


@dataclass(frozen=True, slots=True)
class AttemptError:
    """What went wrong in one attempt, as stored in the job's error history."""

    attempt: int
    error: str
    traceback: str | None
    at: datetime
    worker_id: str | None = None


class Column(Enum):
    """How a column's value travels, which says how each dialect decodes it."""

    VALUE = "value"
    """As the driver returns it."""
    ID = "id"
    """A uuid (PostgreSQL) or its text (SQLite); ``str`` here."""
    STATUS = "status"
    JSON = "json"
    """jsonb, which the driver decodes, or JSON text."""
    TIME = "time"
    """timestamptz, or whole microseconds since the epoch; ``None`` stays ``None``."""
    FLAG = "flag"
    """boolean, or 0 and 1."""
    ERRORS = "errors"
    """The error history, a JSON array."""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One row of the jobs table: the one definition of its columns.

    Each field is the column of the same name, and its ``Column`` (``VALUE`` when not given)
    says how the dialects decode it; ``JOB_COLUMNS`` lists them. A field's default is what a
    new job holds. The public ``Job`` is a subset of these fields, built by ``to_job``.
    """

    id: Annotated[str, Column.ID]
    job_type: str
    queue: str
    payload: Annotated[dict[str, JSON], Column.JSON]
    priority: int
    max_attempts: int
    created_at: Annotated[datetime, Column.TIME]
    scheduled_at: Annotated[datetime, Column.TIME]
    status: Annotated[JobStatus, Column.STATUS] = JobStatus.QUEUED
    attempts: int = 0
    started_at: Annotated[datetime | None, Column.TIME] = None
    finished_at: Annotated[datetime | None, Column.TIME] = None
    result: Annotated[JSON, Column.JSON] = None
    last_error: str | None = None
    errors: Annotated[tuple[AttemptError, ...], Column.ERRORS] = ()
    idempotency_key: str | None = None
    worker_id: Annotated[str | None, Column.ID] = None
    cancel_requested: Annotated[bool, Column.FLAG] = False
    progress: Annotated[dict[str, JSON] | None, Column.JSON] = None
    depends_on: Annotated[list[str] | None, Column.JSON] = None
    blocked: Annotated[bool, Column.FLAG] = False
    """Waiting for a dependency to complete: not claimable."""
    has_dependents: Annotated[bool, Column.FLAG] = False
    release_pending: Annotated[bool, Column.FLAG] = False
    """It ended and its dependents wait for ``job_release``."""
    trace_context: Annotated[dict[str, str] | None, Column.JSON] = None
    """The W3C trace context of the span that enqueued it (``tracing``), if one did."""

    def to_job(self) -> Job:
        """The public ``Job`` of this row.

        Built without validation: every field comes from a row whose types the backend
        guarantees, and validating them again cost more than the rest of a bulk enqueue.
        """
        values = {name: getattr(self, name) for name in _PUBLIC}
        values["depends_on"] = list(self.depends_on or ())
        values["progress"] = (
            None if self.progress is None else Progress.model_validate(self.progress)
        )
        values["errors"] = [
            JobError.model_construct(
                attempt=e.attempt, error=e.error, traceback=e.traceback, at=e.at
            )
            for e in self.errors
        ]
        return Job.model_construct(**values)


def _columns(row: type) -> tuple[tuple[str, Column], ...]:
    hints = get_type_hints(row, include_extras=True)
    return tuple(
        (
            field.name,
            next(
                (
                    m
                    for m in getattr(hints[field.name], "__metadata__", ())
                    if isinstance(m, Column)
                ),
                Column.VALUE,
            ),
        )
        for field in fields(row)
    )


JOB_COLUMNS = _columns(JobRow)
"""Every column of the jobs table, in ``JobRow``'s order, with how it travels."""
_PUBLIC = tuple(name for name in Job.model_fields if name != "errors")


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
    depends_on: tuple[str, ...] = ()
    """Ids of the jobs this one waits for: stored ones, or others of the same insert."""
    trace_context: dict[str, str] | None = None
    """The enqueuing span's W3C trace context (``traceparent``, ``tracestate``), if traced."""


@dataclass(frozen=True, slots=True)
class JobClaimParams:
    """Claim up to ``limit`` due jobs of ``queue`` for ``worker_id``, as its settings allow.

    ``limited`` says that the queue has settings (paused, a concurrency or a rate): the claim
    then enforces them. Without it, the claim is the cheaper one for a queue without settings,
    which takes nothing at all if the queue has some after all. Either way no claim exceeds a
    queue's settings; a caller that is wrong about them only claims nothing, until it knows.
    """

    worker_id: str
    queue: str
    limit: int
    limited: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim took, and how many the queue's settings let it take (at most the limit):
    fewer jobs than ``room`` means the queue had no more due; ``room`` below the limit means
    its settings held the claim back."""

    jobs: list[JobRow]
    room: int


@dataclass(frozen=True, slots=True)
class Rescue:
    """What a rescue did: the jobs it took back, and the silent workers it forgot."""

    jobs: list[JobRow]
    workers: list[str]


@dataclass(frozen=True, slots=True)
class JobPruneParams:
    """Delete finished jobs: completed and cancelled ones that finished more than ``retention``
    seconds ago, failed ones more than ``failed_retention`` (``None``: keep them), at most
    ``limit`` of each status, oldest first."""

    retention: float | None
    failed_retention: float | None
    limit: int


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
class JobProgressParams:
    """An attempt's progress, fenced like its outcome on (id, attempt, worker_id, processing)."""

    id: str
    attempt: int
    worker_id: str
    fraction: float
    message: str | None
    at: datetime


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


@dataclass(frozen=True, slots=True)
class QueueBacklogRow:
    """What one queue holds that could run: a queue with claimable jobs or settings."""

    queue: str
    paused: bool
    backlog: int
    """Queued and retrying jobs that are not blocked on dependencies, due or not."""
    oldest_age: float | None
    """Seconds the oldest due one has waited (``None``: none is due)."""


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The gauges a scrape reads from the database: every queue's backlog, and live workers."""

    queues: tuple[QueueBacklogRow, ...]
    workers: int


@dataclass(frozen=True, slots=True)
class QueueSettingsRow:
    """A queue's settings (none: an unset limit), and whether it has claimable jobs."""

    name: str
    paused: bool = False
    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: int | None = None
    claimable: bool = False


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A queue: its settings, and how many of its jobs are in each status."""

    settings: QueueSettingsRow
    counts: dict[JobStatus, int]


@dataclass(frozen=True, slots=True)
class QueueConfigureParams:
    """New limits of a queue; a limit whose ``set_`` flag is off keeps its current value."""

    name: str
    set_concurrency: bool = False
    concurrency: int | None = None
    set_rate: bool = False
    rate_limit: int | None = None
    rate_period: int | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRegisterParams:
    """A schedule as a starting worker declares it. ``last_tick`` is its latest tick at or
    before now: where a new schedule (or one whose cron or time zone changed) starts from."""

    name: str
    cron: str
    timezone: str
    job_type: str
    payload_json: str
    last_tick: datetime


@dataclass(frozen=True, slots=True)
class ScheduleClaimParams:
    """Enqueue ``job`` for the schedule's ``tick``, unless that tick (or a later one) was
    enqueued already, or the table holds another cron or time zone for the schedule."""

    name: str
    cron: str
    timezone: str
    tick: datetime
    job: JobInsertParams


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One row of the schedules table: a schedule's definition as last registered, and how far
    it has run."""

    name: str
    cron: str
    timezone: str
    job_type: str
    last_tick: datetime
    """No tick at or before this one is to be enqueued any more."""
    last_run_at: datetime | None
    """The tick of the last job enqueued; ``None`` before the first."""
    last_job_id: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A registered worker process, as its heartbeats left it."""

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...] | None
    """The queues it serves; ``None``: every queue."""
    concurrency: int
    started_at: datetime
    last_beat_at: datetime
    running: int
    """Jobs the database holds as running on it."""


@dataclass(frozen=True, slots=True)
class ThroughputRow:
    """How many jobs ended in one status during one minute."""

    minute: datetime
    status: JobStatus
    count: int


NotificationKind = Literal["available", "cancel", "done", "queue"]

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

    async def change_marker(self) -> int:
        """A number that changes when any process changes jobs or queues (not for progress
        reports, nor heartbeats): how a reader that gets no notifications from other
        processes (``capabilities.listen_notify`` false) notices their writes. Comparable
        within one process only."""

    async def job_cancel(self, job_id: str) -> JobRow | None:
        """Cancel a queued or retrying job, or flag a processing one; ``None`` if neither."""

    async def job_claim(self, params: JobClaimParams) -> Claim:
        """Mark up to ``params.limit`` due jobs of the queue processing for the worker, by
        priority, as far as the queue's settings allow."""

    async def job_complete_many(self, params: Sequence[JobCompleteParams]) -> dict[str, JobStatus]:
        """Write attempt outcomes in one round trip; the ids the fence let through, each with
        the status its job ended in."""

    async def job_count(self, params: JobListParams, cap: int) -> int:
        """How many jobs match the filters of ``params``, counting no further than ``cap``."""

    async def job_get(self, job_id: str, *, conn: "AsyncConnection | None" = None) -> JobRow | None:
        """One job by id."""

    async def job_get_by_keys(
        self, keys: Sequence[str], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """The jobs holding these idempotency keys."""

    async def job_insert_many(
        self, params: Sequence[JobInsertParams], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """Insert jobs in one round trip; rows whose idempotency key exists are skipped. Jobs
        with ``depends_on`` are linked to their dependencies in the same transaction (raises
        ``UnknownDependency``, writing nothing, when one does not exist)."""

    async def job_list(self, params: JobListParams) -> list[JobRow]:
        """A page of jobs, newest first."""

    async def job_processing_by_worker(self, worker_id: str) -> list[JobRow]:
        """The jobs the database holds as running on ``worker_id``."""

    async def job_progress(self, params: JobProgressParams) -> bool:
        """Store an attempt's progress; whether the fence let it through."""

    async def job_prune(self, params: JobPruneParams) -> dict[JobStatus, int]:
        """Delete finished jobs past their retention, a batch at a time; how many, by status."""

    def on_dependents_moved(self, listener: Callable[[Sequence[JobRow]], None]) -> None:
        """Call ``listener`` with the dependents a release moved (released to run, or cancelled
        because a dependency failed), once that is committed."""

    async def job_release_pending(self, limit: int) -> int:
        """Release the dependents of up to ``limit`` ended jobs whose release did not happen
        (their process died right after ending them); how many such jobs there were."""

    async def job_rescue_stalled(self, stalled_after: float, worker_id: str) -> Rescue:
        """Put back (or fail) processing jobs whose worker has been silent for ``stalled_after``
        seconds, and forget such workers; ``worker_id`` (the caller's, alive) is never one."""

    async def job_throughput(self, since: datetime) -> list[ThroughputRow]:
        """Completed and failed jobs per minute since ``since``."""

    async def job_retry(self, job_id: str) -> JobRow | None:
        """Queue a failed or cancelled job again with attempts reset; ``None`` if neither."""

    async def metrics_snapshot(self, stalled_after: float) -> MetricsSnapshot:
        """Every queue's backlog, from the claimable index alone, and how many workers beat
        within ``stalled_after`` seconds."""

    async def queue_configure(self, params: QueueConfigureParams) -> None:
        """Set a queue's limits (the queue comes into being if it has no settings yet)."""

    async def queue_find(self, queues: tuple[str, ...] | None) -> list[QueueSettingsRow]:
        """The queues that have claimable jobs or settings, among ``queues`` (``None``: all)."""

    async def queue_list(self, name: str | None) -> list[QueueRow]:
        """Every queue that holds jobs or has settings (or only ``name``), with its counts."""

    async def queue_pause(self, name: str, paused: bool) -> None:
        """Pause or resume a queue (it comes into being if it has no settings yet)."""

    async def queue_stats(self) -> list[QueueStatsRow]:
        """Job counts per queue and status."""

    async def schedule_claim(self, params: ScheduleClaimParams) -> JobRow | None:
        """Move the schedule on to ``params.tick`` and insert its job, in one transaction, if
        no process has enqueued that tick (or a later one); the job, or ``None``."""

    async def schedule_list(self, names: Sequence[str]) -> list[ScheduleRow]:
        """The schedules of these names that the table holds, by name."""

    async def schedule_register(self, params: ScheduleRegisterParams) -> ScheduleRow:
        """Write the schedule's definition, keeping how far it has run (unless its cron or
        time zone changed); the row as it now is."""

    async def worker_deregister(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly."""

    async def worker_heartbeat(self, worker_id: str) -> bool:
        """Prove the worker alive; ``False`` if its row is gone (it was declared lost)."""

    async def worker_list(self) -> list[WorkerRow]:
        """Every registered worker process, with the jobs it runs."""

    async def worker_register(self, params: WorkerParams) -> None:
        """Record a starting worker process."""
