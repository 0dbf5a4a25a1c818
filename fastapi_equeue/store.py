"""``Store``: the backend as the rest of the package uses it, with the events of what it wrote.

Internal: not covered by semver. Reads pass through. Every write that moves a job, a worker
or a queue goes through here, and here, only, it becomes an event: what the database did (the
rows a fence let through, the status a cancel won), not what was asked. A write on a host's
transaction is announced when that transaction commits.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypedDict

from fastapi_equeue import events
from fastapi_equeue.backend import (
    Backend,
    Capabilities,
    Claim,
    JobClaimParams,
    JobCompleteParams,
    JobInsertParams,
    JobListParams,
    JobProgressParams,
    JobPruneParams,
    JobRow,
    MetricsSnapshot,
    Notifier,
    QueueConfigureParams,
    QueueRow,
    QueueSettingsRow,
    QueueStatsRow,
    Rescue,
    ScheduleClaimParams,
    ScheduleRegisterParams,
    ScheduleRow,
    ThroughputRow,
    WorkerParams,
    WorkerRow,
)
from fastapi_equeue.clock import Clock
from fastapi_equeue.config import RELEASE_BATCH
from fastapi_equeue.errors import DatabaseUnavailable
from fastapi_equeue.jobs import JobStatus
from fastapi_equeue.queues import Rate
from fastapi_equeue.sessions import after_commit

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt that ended in this process: the job as claimed, what to write (``None``:
    nothing, its lease was lost), how long it ran, and why it was put back, if it was."""

    job: JobRow
    outcome: JobCompleteParams | None
    duration: float
    requeue_reason: Literal["shutdown", "not_received"] = "shutdown"


class Store:
    """One queue's backend, its event bus and its clock."""

    def __init__(
        self, backend: Backend, bus: events.EventBus, clock: Clock, *, ready: bool = True
    ) -> None:
        self._backend = backend
        self._bus = bus
        self._clock = clock
        self._settled = asyncio.Event()
        self._unready_reason = "the job database has not been reached yet"
        self._failure: BaseException | None = None
        if ready:
            self._settled.set()
        backend.on_dependents_moved(self._dependents_moved)

    @property
    def backend(self) -> Backend:
        """The backend, once its database was reached and migrated; until then, or if it never
        will be, every use raises ``DatabaseUnavailable``."""
        if not self.ready:
            raise DatabaseUnavailable(self._unready_reason)
        return self._backend

    @property
    def ready(self) -> bool:
        """Whether the database was reached (and migrated): the store serves."""
        return self._settled.is_set() and self._failure is None

    def unready(self, reason: str) -> None:
        """Note why the database cannot be used yet."""
        self._unready_reason = reason

    def mark_ready(self) -> None:
        """The database was reached and migrated: serve from now on."""
        self._settled.set()

    def mark_failed(self, exc: BaseException) -> None:
        """The database answered, but cannot be used (a failing migration, say): give up."""
        self._failure = exc
        self._unready_reason = f"the job database cannot be used ({type(exc).__name__})"
        self._settled.set()

    async def wait_ready(self) -> None:
        """Return once the store serves; raise what made it give up, if it did."""
        await self._settled.wait()
        if self._failure is not None:
            raise self._failure

    @property
    def notifier(self) -> Notifier:
        """The backend's notifier: wake-ups from this and (maybe) other processes."""
        return self._backend.notifier

    @property
    def capabilities(self) -> Capabilities:
        """What the backend can do beyond the common ground."""
        return self._backend.capabilities

    # -- jobs: writes --------------------------------------------------------------------------

    async def insert(
        self, params: Sequence[JobInsertParams], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """Insert jobs (an existing idempotency key skips its row); ``JobEnqueued`` for each
        new one, at the host's commit when ``conn`` carries the write."""
        rows = await self.backend.job_insert_many(params, conn=conn)
        if rows and self._bus.wants(events.JobEnqueued):
            at = self._clock.now()
            enqueued = [_enqueued(row, at) for row in rows]
            self._after(conn, lambda: self._emit_all(enqueued))
        return rows

    async def claim(self, params: JobClaimParams) -> Claim:
        """Claim due jobs of a queue for a worker, as its settings allow; ``JobStarted`` for
        each."""
        claim = await self.backend.job_claim(params)
        if claim.jobs and self._bus.wants(events.JobStarted):
            at = self._clock.now()
            for row in claim.jobs:
                self._bus.emit(
                    events.JobStarted(
                        at=at,
                        job_id=row.id,
                        job_type=row.job_type,
                        queue=row.queue,
                        attempt=row.attempts,
                        worker_id=params.worker_id,
                        scheduled_at=row.scheduled_at,
                    )
                )
        return claim

    async def complete(self, attempts: Sequence[Attempt], *, retried: bool = False) -> set[str]:
        """Write the outcomes of ended attempts; the ids the fence let through.

        Each written outcome is announced as the status it ended in (a cancel requested while
        the attempt ended wins over a retry); one the fence refused as ``JobOutcomeDiscarded``.

        ``retried``: an earlier write of these outcomes failed, and may have committed all the
        same (the connection was lost after the commit and before its answer). The fence then
        refuses them as already written: each refused job is read back, and one whose row holds
        this very outcome counts as written, not discarded.
        """
        outcomes = [a.outcome for a in attempts if a.outcome is not None]
        written = await self.backend.job_complete_many(outcomes)
        if retried:
            for outcome in outcomes:
                if outcome.id not in written:
                    row = await self.backend.job_get(outcome.id)
                    if row is not None and _holds(row, outcome):
                        written[outcome.id] = row.status
        at = None
        for attempt in attempts:
            if attempt.outcome is None:
                continue
            status = written.get(attempt.job.id)
            if self._bus.wants(_ENDED.get(status, events.JobRequeued)):
                at = at or self._clock.now()
                self._bus.emit(_ended(attempt, attempt.outcome, status, at))
        return set(written)

    async def progress(self, job: JobRow, params: JobProgressParams) -> bool:
        """Store an attempt's progress (fenced); ``JobProgress`` if it was stored."""
        stored = await self.backend.job_progress(params)
        if stored and self._bus.wants(events.JobProgress):
            self._bus.emit(
                events.JobProgress(
                    **_job_fields(job, params.at),
                    fraction=params.fraction,
                    message=params.message,
                )
            )
        return stored

    async def cancel(self, job_id: str) -> JobRow | None:
        """Cancel a waiting job, or ask a running one to stop; ``None`` if it is neither."""
        row = await self.backend.job_cancel(job_id)
        if row is not None:
            kind = (
                events.JobCancelRequested
                if row.status is JobStatus.PROCESSING
                else events.JobCancelled
            )
            if self._bus.wants(kind):
                self._bus.emit(kind(**_job_fields(row, self._clock.now())))
        return row

    async def retry(self, job_id: str) -> JobRow | None:
        """Queue a failed or cancelled job again, attempts reset; ``None`` if it is neither."""
        row = await self.backend.job_retry(job_id)
        if row is not None and self._bus.wants(events.JobRequeued):
            self._bus.emit(
                events.JobRequeued(**_job_fields(row, self._clock.now()), reason="retry")
            )
        return row

    async def rescue(self, stalled_after: float, worker_id: str) -> Rescue:
        """Take back the jobs of workers silent for ``stalled_after`` and forget those workers
        (never ``worker_id``, the caller's); ``JobRescued`` and ``WorkerLost`` for each."""
        rescue = await self.backend.job_rescue_stalled(stalled_after, worker_id)
        at = self._clock.now()
        if rescue.jobs and self._bus.wants(events.JobRescued):
            for row in rescue.jobs:
                self._bus.emit(
                    events.JobRescued(
                        **_job_fields(row, at), lost_worker_id=_lost_worker(row), status=row.status
                    )
                )
        if rescue.workers and self._bus.wants(events.WorkerLost):
            for lost in rescue.workers:
                self._bus.emit(events.WorkerLost(at=at, worker_id=lost, ours=False))
        return rescue

    async def release_pending(self) -> int:
        """Release the dependents of jobs whose end was written but whose release was not (the
        process that ended them died in between); how many such jobs there were."""
        return await self.backend.job_release_pending(RELEASE_BATCH)

    async def prune(self, params: JobPruneParams) -> dict[JobStatus, int]:
        """Delete a batch of finished jobs past their retention; ``JobsPruned`` if any were."""
        counts = await self.backend.job_prune(params)
        if counts and self._bus.wants(events.JobsPruned):
            self._bus.emit(events.JobsPruned(at=self._clock.now(), counts=counts))
        return counts

    # -- jobs: reads ---------------------------------------------------------------------------

    async def get(self, job_id: str, *, conn: "AsyncConnection | None" = None) -> JobRow | None:
        """One job by id."""
        return await self.backend.job_get(job_id, conn=conn)

    async def get_by_keys(
        self, keys: Sequence[str], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """The jobs holding these idempotency keys."""
        return await self.backend.job_get_by_keys(keys, conn=conn)

    async def page(self, params: JobListParams) -> list[JobRow]:
        """A page of jobs, newest first."""
        return await self.backend.job_list(params)

    async def processing_by_worker(self, worker_id: str) -> list[JobRow]:
        """The jobs the database holds as running on ``worker_id``."""
        return await self.backend.job_processing_by_worker(worker_id)

    async def stats(self) -> list[QueueStatsRow]:
        """Job counts per queue and status."""
        return await self.backend.queue_stats()

    async def metrics_snapshot(self, stalled_after: float) -> MetricsSnapshot:
        """Every queue's backlog and the workers alive: the gauges of a metrics scrape."""
        return await self.backend.metrics_snapshot(stalled_after)

    async def count(self, params: JobListParams, cap: int) -> int:
        """How many jobs match the filters of ``params``, counting no further than ``cap``."""
        return await self.backend.job_count(params, cap)

    async def throughput(self, since: datetime) -> list[ThroughputRow]:
        """Completed and failed jobs per minute since ``since``."""
        return await self.backend.job_throughput(since)

    async def workers(self) -> list[WorkerRow]:
        """Every registered worker process, with the jobs it runs."""
        return await self.backend.worker_list()

    async def change_marker(self) -> int:
        """A number that moves when any process writes jobs or queues."""
        return await self.backend.change_marker()

    # -- queues --------------------------------------------------------------------------------

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a queue; ``QueuePaused`` or ``QueueResumed``."""
        await self.backend.queue_pause(name, paused)
        kind = events.QueuePaused if paused else events.QueueResumed
        if self._bus.wants(kind):
            self._bus.emit(kind(at=self._clock.now(), queue=name))

    async def configure(self, params: QueueConfigureParams) -> None:
        """Set a queue's limits; ``QueueLimitsChanged`` with the limits it now has."""
        await self.backend.queue_configure(params)
        if self._bus.wants(events.QueueLimitsChanged):
            (now,) = await self.backend.queue_find((params.name,))
            rate = None
            if now.rate_limit is not None and now.rate_period is not None:
                rate = str(Rate(now.rate_limit, now.rate_period))
            self._bus.emit(
                events.QueueLimitsChanged(
                    at=self._clock.now(), queue=params.name, concurrency=now.concurrency, rate=rate
                )
            )

    async def queues(self, name: str | None = None) -> list[QueueRow]:
        """Every queue that holds jobs or has settings (or only ``name``), with its counts."""
        return await self.backend.queue_list(name)

    async def queues_to_serve(self, queues: tuple[str, ...] | None) -> list[QueueSettingsRow]:
        """The queues with claimable jobs or settings, among ``queues`` (``None``: all)."""
        return await self.backend.queue_find(queues)

    # -- schedules -----------------------------------------------------------------------------

    async def register_schedule(self, params: ScheduleRegisterParams) -> ScheduleRow:
        """Write a schedule's definition, keeping how far it has run; its row as it now is."""
        return await self.backend.schedule_register(params)

    async def enqueue_tick(self, params: ScheduleClaimParams) -> JobRow | None:
        """Enqueue a schedule's job for its tick unless some process did; ``JobEnqueued`` if
        this call did."""
        row = await self.backend.schedule_claim(params)
        if row is not None and self._bus.wants(events.JobEnqueued):
            self._bus.emit(_enqueued(row, self._clock.now()))
        return row

    async def schedules(self, names: Sequence[str]) -> list[ScheduleRow]:
        """The rows of the schedules of these names, by name."""
        return await self.backend.schedule_list(names)

    # -- workers -------------------------------------------------------------------------------

    async def register(self, params: WorkerParams) -> None:
        """Record a starting worker; ``WorkerStarted``."""
        await self.backend.worker_register(params)
        if self._bus.wants(events.WorkerStarted):
            self._bus.emit(
                events.WorkerStarted(
                    at=self._clock.now(),
                    worker_id=params.id,
                    hostname=params.hostname,
                    pid=params.pid,
                    concurrency=params.concurrency,
                    queues=params.queues,
                )
            )

    async def beat(self, worker_id: str) -> bool:
        """Prove a worker alive; ``False`` (and ``WorkerLost``) if it was declared lost."""
        alive = await self.backend.worker_heartbeat(worker_id)
        if not alive and self._bus.wants(events.WorkerLost):
            self._bus.emit(events.WorkerLost(at=self._clock.now(), worker_id=worker_id, ours=True))
        return alive

    async def deregister(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly; ``WorkerStopped``."""
        await self.backend.worker_deregister(worker_id)
        if self._bus.wants(events.WorkerStopped):
            self._bus.emit(events.WorkerStopped(at=self._clock.now(), worker_id=worker_id))

    def _dependents_moved(self, rows: Sequence[JobRow]) -> None:
        # A dependent cancelled because a dependency failed is a job's end like any other.
        if self._bus.wants(events.JobCancelled):
            at = self._clock.now()
            for row in rows:
                if row.status is JobStatus.CANCELLED:
                    self._bus.emit(events.JobCancelled(**_job_fields(row, at)))

    # -- plumbing ------------------------------------------------------------------------------

    def _after(self, conn: "AsyncConnection | None", emit: Callable[[], None]) -> None:
        if conn is None:
            emit()
        else:
            after_commit(conn, emit)

    def _emit_all(self, batch: Sequence[events.Event]) -> None:
        for event in batch:
            self._bus.emit(event)


class _JobFields(TypedDict):
    at: datetime
    job_id: str
    job_type: str
    queue: str
    attempt: int


def _job_fields(row: JobRow, at: datetime) -> _JobFields:
    return {
        "at": at,
        "job_id": row.id,
        "job_type": row.job_type,
        "queue": row.queue,
        "attempt": row.attempts,
    }


def _enqueued(row: JobRow, at: datetime) -> events.JobEnqueued:
    return events.JobEnqueued(
        **_job_fields(row, at), priority=row.priority, scheduled_at=row.scheduled_at
    )


def _lost_worker(row: JobRow) -> str | None:
    # The rescue recorded the lost worker in the attempt's error.
    return row.errors[-1].worker_id if row.errors else None


_ENDED: dict[JobStatus | None, type[events.Event]] = {
    None: events.JobOutcomeDiscarded,
    JobStatus.COMPLETED: events.JobCompleted,
    JobStatus.RETRYING: events.JobRetrying,
    JobStatus.FAILED: events.JobFailed,
    JobStatus.CANCELLED: events.JobCancelled,
}
"""The event of an attempt's outcome by the status its write ended in (``None``: refused);
any other status (``queued``) is a requeue."""


def _holds(row: JobRow, outcome: JobCompleteParams) -> bool:
    """Whether ``row`` is as writing ``outcome`` left it: the attempt ended (no worker holds
    it), in the outcome's status (or cancelled, as a cancel requested meanwhile wins over a
    retry), with the outcome's error recorded for that attempt. A put-back (``queued``) does
    not count the attempt, so nothing tells it from a later claim: it is never taken as
    written."""
    if outcome.status == "queued" or row.worker_id is not None:
        return False
    if row.attempts != outcome.attempt:
        return False
    cancelled = row.status is JobStatus.CANCELLED and outcome.status == "retrying"
    if row.status.value != outcome.status and not cancelled:
        return False
    error = outcome.error
    return error is None or any(
        e.attempt == outcome.attempt and e.error == error.error for e in row.errors
    )


def _ended(
    attempt: Attempt, outcome: JobCompleteParams, status: JobStatus | None, at: datetime
) -> events.Event:
    """The event of an attempt's outcome, as the write ended it (``None``: refused)."""
    job = _job_fields(attempt.job, at)
    job["attempt"] = outcome.attempt
    worker, duration = outcome.worker_id, attempt.duration
    error = outcome.error.error if outcome.error is not None else ""
    if status is None:
        return events.JobOutcomeDiscarded(**job, worker_id=worker, duration=duration)
    if status is JobStatus.COMPLETED:
        return events.JobCompleted(**job, worker_id=worker, duration=duration)
    if status is JobStatus.RETRYING:
        return events.JobRetrying(
            **job, worker_id=worker, duration=duration, error=error, retry_in=outcome.retry_delay
        )
    if status is JobStatus.FAILED:
        return events.JobFailed(**job, worker_id=worker, duration=duration, error=error)
    if status is JobStatus.CANCELLED:
        return events.JobCancelled(**job, worker_id=worker, duration=duration)
    return events.JobRequeued(**job, reason=attempt.requeue_reason)
