"""``QueueClient``: enqueue, inspect, cancel, retry and wait for jobs.

It validates everything before anything is written (job type, payload, options, size), turns a
host's ``AsyncSession`` into the connection its transaction runs on, and calls the backend.
"""

import asyncio
import builtins
import contextlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi_equeue.backend import Backend, JobInsertParams, JobListParams, JobRow, Notification
from fastapi_equeue.config import (
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY,
    MAX_IDEMPOTENCY_KEY,
    MAX_LIST_LIMIT,
    MAX_PRIORITY,
    Config,
    check_queue_name,
)
from fastapi_equeue.errors import (
    ConfigurationError,
    InvalidCursor,
    InvalidOption,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
)
from fastapi_equeue.jobs import (
    Job,
    JobError,
    JobStatus,
    Page,
    QueueStats,
    decode_cursor,
    encode_cursor,
    new_job_id,
    parse_job_id,
)
from fastapi_equeue.tasks import TaskRegistry

if TYPE_CHECKING:
    # SQLAlchemy loads only when a host passes its session: a worker never needs it.
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

logger = logging.getLogger(__name__)

# Every stored time must read back as a Python datetime, in every time zone.
EARLIEST_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RUN_AT = datetime(9000, 1, 1, tzinfo=UTC)
_ENQUEUE_OPTIONS = frozenset(
    {"queue", "priority", "delay", "run_at", "max_attempts", "idempotency_key"}
)


@dataclass(frozen=True, slots=True)
class Submission:
    """What ``QueueClient.submit`` did: the job, and whether this call created it."""

    job: Job
    created: bool


class QueueClient:
    """The way to talk to a queue: from endpoints (``Depends(equeue.get_queue)``) or scripts.

    Example:
        >>> job = await queue.client.enqueue("send_email", {"recipient_email": "a@example.com",
        ...                                                 "subject": "Hi", "body": "..."})
        >>> job = await queue.client.wait(job.id, timeout=10)
    """

    def __init__(self, backend: Backend, registry: TaskRegistry, config: Config) -> None:
        self._backend = backend
        self._registry = registry
        self._config = config

    async def enqueue(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        session: "AsyncSession | AsyncConnection | None" = None,
    ) -> Job:
        """Add one job; with ``idempotency_key``, return the existing job that holds the key.

        Args:
            job_type: the name of a task registered with ``@queue.task``.
            payload: the task's keyword arguments, validated against its type hints.
            queue: overrides the task's queue.
            priority: overrides the task's priority (higher runs first).
            delay: seconds (or a ``timedelta``) from now before the job may run.
            run_at: an aware ``datetime`` before which the job may not run.
            max_attempts: overrides the task's ``max_attempts``.
            idempotency_key: while a job with this key exists, enqueueing again returns it.
            session: the host's ``AsyncSession`` or ``AsyncConnection``: the job is written in
                its transaction and exists only if that transaction commits.

        Raises:
            UnknownJobType, InvalidPayload, PayloadTooLarge, InvalidOption: nothing is written.
        """
        options = {
            "queue": queue,
            "priority": priority,
            "delay": delay,
            "run_at": run_at,
            "max_attempts": max_attempts,
            "idempotency_key": idempotency_key,
        }
        return (await self.submit(job_type, payload, session=session, **options)).job

    async def submit(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        session: "AsyncSession | AsyncConnection | None" = None,
        **options: Any,
    ) -> "Submission":
        """``enqueue``, also telling whether the job is new or an idempotent repeat.

        Takes ``enqueue``'s keyword options; ``Submission.created`` is ``False`` when an
        ``idempotency_key`` returned the job that already held it.
        """
        unknown = set(options) - _ENQUEUE_OPTIONS
        if unknown:
            raise InvalidOption(sorted(unknown)[0], "is not an enqueue option")
        ((job, created),) = await self._insert([self._params(job_type, payload, options)], session)
        return Submission(job=job, created=created)

    async def enqueue_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        session: "AsyncSession | AsyncConnection | None" = None,
    ) -> builtins.list[Job]:
        """Add many jobs in one round trip; each item has ``job_type``, ``payload`` and any of
        ``enqueue``'s options. Every item is validated before any is written."""
        params = []
        # Typed as object: items come from users (and the REST API) and are checked, not trusted.
        items: builtins.list[object] = builtins.list(jobs)
        for index, raw in enumerate(items):
            if not isinstance(raw, Mapping) or "job_type" not in raw:
                raise InvalidOption("jobs", f"item {index} must be a dict with a 'job_type'")
            item: Mapping[str, Any] = raw
            unknown = set(item) - _ENQUEUE_OPTIONS - {"job_type", "payload"}
            if unknown:
                raise InvalidOption("jobs", f"item {index} has unknown keys {sorted(unknown)}")
            options = {name: item.get(name) for name in _ENQUEUE_OPTIONS}
            params.append(self._params(item["job_type"], item.get("payload"), options))
        if not params:
            return []
        return [job for job, _ in await self._insert(params, session)]

    async def get(self, job_id: str) -> Job | None:
        """The job with this id, or ``None`` (also for an id that cannot be one of ours)."""
        row = await self._row(job_id)
        return to_job(row) if row is not None else None

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a waiting one at once, a running one in its worker (it ends
        ``cancelled`` shortly after).

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job has already finished.
        """
        canonical = _require_id(job_id)
        row = await self._backend.job_cancel(canonical)
        if row is None:
            raise InvalidTransition(canonical, "cancel", await self._status(canonical))
        logger.info(
            "job %s id=%s type=%s queue=%s",
            "cancel requested" if row.status == JobStatus.PROCESSING else "cancelled",
            row.id,
            row.job_type,
            row.queue,
        )
        return to_job(row)

    async def retry(self, job_id: str) -> Job:
        """Queue a ``failed`` or ``cancelled`` job again, with its attempts reset to 0.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is neither failed nor cancelled.
        """
        canonical = _require_id(job_id)
        row = await self._backend.job_retry(canonical)
        if row is None:
            raise InvalidTransition(canonical, "retry", await self._status(canonical))
        logger.info(
            "job queued for a manual retry id=%s type=%s queue=%s", row.id, row.job_type, row.queue
        )
        return to_job(row)

    async def list(
        self,
        *,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """A page of jobs, newest first; pass ``next_cursor`` back for the next page.

        Raises:
            InvalidOption: a bad filter or a ``limit`` outside 1..500.
            InvalidCursor: a cursor that ``list`` did not issue.
        """
        limit = _limit(limit)
        try:
            status_value = JobStatus(status) if status is not None else None
        except ValueError:
            raise InvalidOption(
                "status", f"must be one of {[s.value for s in JobStatus]}"
            ) from None
        after = None
        if cursor is not None:
            after = decode_cursor(cursor)
            if after is None:
                raise InvalidCursor("the cursor is not one that list() returned")
        rows = await self._backend.job_list(
            JobListParams(
                limit=limit + 1,
                status=status_value,
                job_type=_filter("job_type", job_type),
                queue=_filter("queue", queue),
                after=after,
            )
        )
        items = [to_job(row) for row in rows[:limit]]
        more = len(rows) > limit
        next_cursor = (
            encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if more else None
        )
        return Page(items=items, next_cursor=next_cursor)

    async def stats(self) -> QueueStats:
        """Counts per status and queue, the oldest waiting job's age, and recent outcomes."""
        rows = await self._backend.queue_stats()
        counts = dict.fromkeys(JobStatus, 0)
        queues: dict[str, dict[JobStatus, int]] = {}
        ages = [row.oldest_due_age for row in rows if row.oldest_due_age is not None]
        recent = dict.fromkeys(JobStatus, 0)
        for row in rows:
            counts[row.status] += row.count
            queues.setdefault(row.queue, {})[row.status] = row.count
            recent[row.status] += row.finished_last_minute
        return QueueStats(
            counts=counts,
            queues=queues,
            oldest_queued_age=max(0.0, max(ages)) if ages else None,
            completed_last_minute=recent[JobStatus.COMPLETED],
            failed_last_minute=recent[JobStatus.FAILED],
        )

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Return the job once it is ``completed``, ``failed`` or ``cancelled``.

        Woken by the completion notification where the backend has them, else by polling at
        ``poll_interval``.

        Raises:
            JobNotFound: no such job.
            TimeoutError: ``timeout`` seconds passed first.
        """
        canonical = _require_id(job_id)
        changed = asyncio.Event()

        def on_notification(notification: Notification) -> None:
            if notification.kind in ("done", "cancel") and canonical in notification.values:
                changed.set()

        unsubscribe = self._backend.notifier.subscribe(on_notification)
        try:
            async with asyncio.timeout(timeout):
                await self._backend.notifier.start()
                while True:
                    changed.clear()
                    row = await self._backend.job_get(canonical)
                    if row is None:
                        raise JobNotFound(canonical)
                    if row.status.is_final:
                        return to_job(row)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), self._config.poll_interval)
        finally:
            unsubscribe()

    # -- internals -----------------------------------------------------------------------------

    def _params(
        self, job_type: str, payload: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> JobInsertParams:
        task = self._registry.get(job_type)
        stored, encoded, size = task.prepare_payload(payload)
        if size > self._config.max_payload_bytes:
            raise PayloadTooLarge(size, self._config.max_payload_bytes)
        queue = options.get("queue")
        priority = options.get("priority")
        max_attempts = options.get("max_attempts")
        return JobInsertParams(
            id=new_job_id(),
            job_type=task.name,
            queue=_queue(queue) if queue is not None else task.queue,
            payload=stored,
            payload_json=encoded,
            priority=_priority(priority) if priority is not None else task.priority,
            max_attempts=_max_attempts(max_attempts)
            if max_attempts is not None
            else task.max_attempts,
            delay=_delay(options.get("delay")),
            run_at=_run_at(options.get("run_at")),
            idempotency_key=_idempotency_key(options.get("idempotency_key")),
        )

    async def _insert(
        self,
        params: Sequence[JobInsertParams],
        session: "AsyncSession | AsyncConnection | None",
    ) -> builtins.list[tuple[Job, bool]]:
        conn = await _connection(session)
        rows = {row.id: row for row in await self._backend.job_insert_many(params, conn=conn)}
        keys = [p.idempotency_key for p in params if p.id not in rows and p.idempotency_key]
        existing = {}
        if keys:
            existing = {
                row.idempotency_key: row
                for row in await self._backend.job_get_by_keys(keys, conn=conn)
            }
        jobs = []
        for p in params:
            row = rows.get(p.id) or existing.get(p.idempotency_key)
            if row is None:  # pragma: no cover - the key's row vanished between two statements
                raise JobNotFound(p.id)
            if row.id == p.id:
                _log_queued(row)
            jobs.append((to_job(row), row.id == p.id))
        return jobs

    async def _row(self, job_id: str) -> JobRow | None:
        canonical = parse_job_id(job_id)
        return await self._backend.job_get(canonical) if canonical else None

    async def _status(self, job_id: str) -> JobStatus:
        row = await self._backend.job_get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return row.status


def to_job(row: JobRow) -> Job:
    """The public ``Job`` for a backend row.

    Built without validation: every field comes from a row whose types the backend guarantees,
    and validating them again cost more than the rest of a bulk enqueue.
    """
    return Job.model_construct(
        id=row.id,
        job_type=row.job_type,
        queue=row.queue,
        status=row.status,
        payload=row.payload,
        priority=row.priority,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        created_at=row.created_at,
        scheduled_at=row.scheduled_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=row.result,
        last_error=row.last_error,
        errors=[
            JobError.model_construct(
                attempt=e.attempt, error=e.error, traceback=e.traceback, at=e.at
            )
            for e in row.errors
        ],
    )


async def _connection(
    session: "AsyncSession | AsyncConnection | None",
) -> "AsyncConnection | None":
    if session is None:
        return None
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(session, AsyncConnection):
        return session
    if isinstance(session, AsyncSession):
        return await session.connection()
    raise TypeError(
        "session must be a SQLAlchemy AsyncSession or AsyncConnection, "
        f"got {type(session).__name__}"
    )


def _log_queued(row: JobRow) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "job queued id=%s type=%s queue=%s",
            row.id,
            row.job_type,
            row.queue,
            extra={
                "job_id": row.id,
                "job_type": row.job_type,
                "queue": row.queue,
                "attempt": row.attempts,
                "status": "queued",
            },
        )


def _require_id(job_id: str) -> str:
    canonical = parse_job_id(job_id)
    if canonical is None:
        raise JobNotFound(str(job_id)[:100])
    return canonical


def _nul(value: str) -> bool:
    return "\x00" in value


def _filter(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 200 or _nul(value):
        raise InvalidOption(
            name, "must be a non-empty string of at most 200 chars, and no NUL", location="query"
        )
    return value


def _limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIST_LIMIT:
        raise InvalidOption("limit", f"must be an integer in 1..{MAX_LIST_LIMIT}", location="query")
    return value


def _queue(value: Any) -> str:
    try:
        return check_queue_name(value)
    except ConfigurationError as exc:
        raise InvalidOption("queue", str(exc)) from None


def _priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise InvalidOption("priority", f"must be an integer in -{MAX_PRIORITY}..{MAX_PRIORITY}")
    return value


def _max_attempts(value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_ATTEMPTS_LIMIT
    ):
        raise InvalidOption("max_attempts", f"must be an integer in 1..{MAX_ATTEMPTS_LIMIT}")
    return value


def _delay(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_DELAY
    ):
        raise InvalidOption("delay", "must be seconds (or a timedelta) from 0 to ten years")
    return float(value)


def _run_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidOption("run_at", "must be a timezone-aware datetime")
    try:
        in_range = EARLIEST_RUN_AT <= value <= LATEST_RUN_AT
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidOption("run_at", "must be between 1970 and 9000 (UTC)")
    # In UTC: some offsets Python accepts (over 15:59) are beyond what PostgreSQL takes.
    return value.astimezone(UTC)


def _idempotency_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_IDEMPOTENCY_KEY or _nul(value):
        raise InvalidOption(
            "idempotency_key",
            f"must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} chars, and no NUL",
        )
    return value
