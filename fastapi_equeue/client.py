"""``QueueClient``: enqueue, inspect, cancel, retry and wait for jobs; pause and limit queues.

It validates everything before anything is written (job type, payload, options, size), turns a
host's ``AsyncSession`` into the connection its transaction runs on, and calls the store.
"""

import asyncio
import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi_equeue.backend import (
    JobInsertParams,
    JobListParams,
    JobRow,
    Notification,
    QueueConfigureParams,
    QueueRow,
    QueueSettingsRow,
)
from fastapi_equeue.clock import Clock
from fastapi_equeue.config import (
    MAX_COUNT,
    MAX_LIST_LIMIT,
    MINUTES_PER_DAY,
    Config,
    check_queue_name,
    storable_text,
)
from fastapi_equeue.errors import (
    InvalidCursor,
    InvalidOption,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
)
from fastapi_equeue.insight import Backlog, QueueBacklog, ThroughputPoint, WorkerInfo
from fastapi_equeue.jobs import (
    Job,
    JobStatus,
    Page,
    QueueStats,
    decode_cursor,
    encode_cursor,
    new_job_id,
    parse_job_id,
)
from fastapi_equeue.options import EnqueueOptions
from fastapi_equeue.periodic import Schedule, ScheduleInfo
from fastapi_equeue.queues import KEEP, Keep, QueueInfo, Rate, check_concurrency
from fastapi_equeue.sessions import connection_of
from fastapi_equeue.store import Store
from fastapi_equeue.tasks import TaskRegistry
from fastapi_equeue.tracing import Tracing

if TYPE_CHECKING:
    # SQLAlchemy loads only when a host passes its session: a worker never needs it.
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


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

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        config: Config,
        clock: Clock,
        *,
        schedules: Mapping[str, Schedule] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._tracing = tracing
        self._registry = registry
        self._config = config
        self._clock = clock
        self._schedules: Mapping[str, Schedule] = schedules if schedules is not None else {}

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
        depends_on: Sequence[str | Job] | None = None,
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
            depends_on: jobs (ids or ``Job`` objects) this one waits for: it starts once every
                one has completed, and ends ``cancelled`` if one fails or is cancelled.
            session: the host's ``AsyncSession`` or ``AsyncConnection``: the job is written in
                its transaction and exists only if that transaction commits.

        Raises:
            UnknownJobType, InvalidPayload, PayloadTooLarge, InvalidOption: nothing is written
                (``UnknownDependency``, an ``InvalidOption``, names a dependency that does not
                exist).
        """
        options = EnqueueOptions(
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            depends_on=depends_on,
        )
        return (await self.submit(job_type, payload, options, session=session)).job

    async def submit(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        options: EnqueueOptions | None = None,
        *,
        session: "AsyncSession | AsyncConnection | None" = None,
    ) -> Submission:
        """``enqueue`` with its options as one ``EnqueueOptions``, also telling whether the job
        is new (``created``) or the one an ``idempotency_key`` already named.

        Raises:
            UnknownJobType, InvalidPayload, PayloadTooLarge, InvalidOption: nothing is written.
        """
        checked = options.checked() if options is not None else EnqueueOptions()
        params = self._params(job_type, payload, checked)
        ((job, created),) = await self._insert([params], session)
        return Submission(job=job, created=created)

    async def enqueue_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        session: "AsyncSession | AsyncConnection | None" = None,
    ) -> builtins.list[Job]:
        """Add many jobs in one round trip; each item has ``job_type``, ``payload`` and any of
        ``enqueue``'s options. Every item is validated before any is written, and all are
        written in one transaction.

        An item's ``depends_on`` may name an earlier item of the same call by its index (fan-out
        and fan-in in one call): ``[{"job_type": "fetch"}, {"job_type": "parse",
        "depends_on": [0]}]``.
        """
        params: builtins.list[JobInsertParams] = []
        # Typed as object: items come from users (and the REST API) and are checked, not trusted.
        items: builtins.list[object] = builtins.list(jobs)
        for index, raw in enumerate(items):
            if not isinstance(raw, Mapping) or "job_type" not in raw:
                raise InvalidOption("jobs", f"item {index} must be a dict with a 'job_type'")
            item: Mapping[str, Any] = raw
            named = {k: v for k, v in item.items() if k not in ("job_type", "payload")}
            try:
                options = EnqueueOptions.from_mapping(named).checked()
            except InvalidOption as exc:
                raise InvalidOption("jobs", f"item {index}: {exc}") from None
            params.append(self._params(item["job_type"], item.get("payload"), options, params))
        if not params:
            return []
        return [job for job, _ in await self._insert(params, session)]

    async def get(self, job_id: str) -> Job | None:
        """The job with this id, or ``None`` (also for an id that cannot be one of ours)."""
        canonical = parse_job_id(job_id)
        row = await self._store.get(canonical) if canonical else None
        return row.to_job() if row is not None else None

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a waiting one at once, a running one in its worker (it ends
        ``cancelled`` shortly after).

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job has already finished.
        """
        canonical = _require_id(job_id)
        row = await self._store.cancel(canonical)
        if row is None:
            raise InvalidTransition(canonical, "cancel", await self._status(canonical))
        return row.to_job()

    async def retry(self, job_id: str) -> Job:
        """Queue a ``failed`` or ``cancelled`` job again, with its attempts reset to 0.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is neither failed nor cancelled.
        """
        canonical = _require_id(job_id)
        row = await self._store.retry(canonical)
        if row is None:
            raise InvalidTransition(canonical, "retry", await self._status(canonical))
        return row.to_job()

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
        status_value = _status(status)
        after = None
        if cursor is not None:
            after = decode_cursor(cursor)
            if after is None:
                raise InvalidCursor("the cursor is not one that list() returned")
        rows = await self._store.page(
            JobListParams(
                limit=limit + 1,
                status=status_value,
                job_type=_filter("job_type", job_type),
                queue=_filter("queue", queue),
                after=after,
            )
        )
        items = [row.to_job() for row in rows[:limit]]
        more = len(rows) > limit
        next_cursor = (
            encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if more else None
        )
        return Page(items=items, next_cursor=next_cursor)

    async def stats(self) -> QueueStats:
        """Counts per status and queue, the oldest waiting job's age, and recent outcomes."""
        rows = await self._store.stats()
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

    async def count(
        self,
        *,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        cap: int = MAX_COUNT,
    ) -> int:
        """How many jobs match the filters of ``list``, counting no further than ``cap`` (at
        most 10,000): a result of ``cap`` means "``cap`` or more", and it stays cheap on any
        table.

        Raises:
            InvalidOption: a bad filter, or a ``cap`` below 1.
        """
        cap = _positive("cap", cap, MAX_COUNT)
        params = JobListParams(
            limit=cap,
            status=_status(status),
            job_type=_filter("job_type", job_type),
            queue=_filter("queue", queue),
        )
        return await self._store.count(params, cap)

    async def backlog(self) -> Backlog:
        """What could run, per queue (backlog, oldest due job's age, paused), and the live
        workers; read from the claim's index alone, so cheap on any table."""
        snapshot = await self._store.metrics_snapshot(self._config.stalled_after)
        queues = [
            QueueBacklog(
                queue=row.queue, paused=row.paused, backlog=row.backlog, oldest_age=row.oldest_age
            )
            for row in snapshot.queues
        ]
        return Backlog(queues=queues, workers=snapshot.workers)

    async def throughput(self, minutes: int = 60) -> builtins.list[ThroughputPoint]:
        """Jobs completed and failed per minute over the last ``minutes`` (at most a day),
        oldest first, one point per minute including the current one."""
        minutes = _positive("minutes", minutes, MINUTES_PER_DAY)
        now = self._clock.now()
        start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        counts: dict[datetime, dict[JobStatus, int]] = {}
        for row in await self._store.throughput(start):
            counts.setdefault(row.minute, {})[row.status] = row.count
        points = []
        for i in range(minutes):
            minute = start + timedelta(minutes=i)
            ended = counts.get(minute, {})
            points.append(
                ThroughputPoint(
                    minute=minute,
                    completed=ended.get(JobStatus.COMPLETED, 0),
                    failed=ended.get(JobStatus.FAILED, 0),
                )
            )
        return points

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Every worker process registered on this database, in an app or standalone; those
        that did not beat within ``stalled_after`` have ``alive`` false."""
        now = self._clock.now()
        stalled = timedelta(seconds=self._config.stalled_after)
        return [
            WorkerInfo(
                id=row.id,
                hostname=row.hostname,
                pid=row.pid,
                queues=list(row.queues) if row.queues is not None else None,
                concurrency=row.concurrency,
                started_at=row.started_at,
                last_beat_at=row.last_beat_at,
                running=row.running,
                alive=now - row.last_beat_at <= stalled,
            )
            for row in await self._store.workers()
        ]

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Return the job once it is ``completed``, ``failed`` or ``cancelled``.

        Woken by the job's ``done`` notification where the backend has them, else by polling
        at ``poll_interval``.

        Raises:
            JobNotFound: no such job.
            TimeoutError: ``timeout`` seconds passed first.
        """
        canonical = _require_id(job_id)
        done = asyncio.Event()

        def on_notification(notification: Notification) -> None:
            if notification.kind == "done" and canonical in notification.values:
                done.set()

        unsubscribe = self._store.notifier.subscribe(on_notification)
        try:
            async with asyncio.timeout(timeout):
                await self._store.notifier.start()
                while True:
                    done.clear()
                    row = await self._store.get(canonical)
                    if row is None:
                        raise JobNotFound(canonical)
                    if row.status.is_final:
                        return row.to_job()
                    await self._clock.wait(done, self._config.poll_interval)
        finally:
            unsubscribe()

    # -- queues --------------------------------------------------------------------------------

    async def queues(self) -> builtins.list[QueueInfo]:
        """Every queue that holds jobs or has settings, by name, with its jobs per status.

        A queue comes into being by use: enqueueing into a name, pausing it or configuring it.
        """
        return [_queue_info(row) for row in await self._store.queues()]

    async def queue_settings(self) -> builtins.list[QueueInfo]:
        """The queues that have jobs waiting or settings, with their settings but no counts
        (``counts`` is empty): read from the claim's index and the settings table, so cheap on
        any table, where ``queues()`` counts every job."""
        rows = await self._store.queues_to_serve(None)
        return [_queue_info(QueueRow(row, {})).model_copy(update={"counts": {}}) for row in rows]

    async def pause_queue(self, name: str) -> QueueInfo:
        """Pause a queue: it accepts jobs and starts none, in every process, within one
        ``poll_interval``; jobs already running finish.

        Raises:
            InvalidOption: ``name`` is not a usable queue name (nothing changed).
        """
        name = _queue_name(name)
        await self._store.set_paused(name, paused=True)
        return await self._queue(name)

    async def resume_queue(self, name: str) -> QueueInfo:
        """Resume a paused queue: its jobs start again.

        Raises:
            InvalidOption: ``name`` is not a usable queue name (nothing changed).
        """
        name = _queue_name(name)
        await self._store.set_paused(name, paused=False)
        return await self._queue(name)

    async def configure_queue(
        self,
        name: str,
        *,
        concurrency: int | Keep | None = KEEP,
        rate: str | Keep | None = KEEP,
    ) -> QueueInfo:
        """Set a queue's limits, obeyed by every worker within one ``poll_interval``.

        Args:
            name: the queue.
            concurrency: the most of its jobs processing at once over all workers (``None``:
                no limit).
            rate: the most of its jobs started per period over all workers: ``"N/second"``,
                ``"N/minute"`` or ``"N/hour"`` (``None``: no limit).

        A keyword left out keeps its current value.

        Raises:
            InvalidOption: a bad name, a concurrency below 1 or a rate that does not parse,
                naming the field (nothing changed).
        """
        name = _queue_name(name)
        params = QueueConfigureParams(name=name)
        if not isinstance(concurrency, Keep):
            params = replace(params, set_concurrency=True, concurrency=_concurrency(concurrency))
        if not isinstance(rate, Keep):
            parsed = _rate(rate)
            params = replace(
                params,
                set_rate=True,
                rate_limit=parsed.limit if parsed else None,
                rate_period=parsed.period if parsed else None,
            )
        await self._store.configure(params)
        return await self._queue(name)

    # -- periodic jobs -------------------------------------------------------------------------

    async def schedules(self) -> builtins.list[ScheduleInfo]:
        """This queue's periodic jobs (``queue.periodic``), by name: when each runs next, and
        the tick and job of its last run (``None`` before the first)."""
        names = sorted(self._schedules)
        if not names:
            return []
        rows = {row.name: row for row in await self._store.schedules(names)}
        now = self._clock.now()
        infos = []
        for name in names:
            schedule, row = self._schedules[name], rows.get(name)
            infos.append(
                ScheduleInfo(
                    name=name,
                    cron=schedule.cron,
                    timezone=schedule.timezone,
                    job_type=schedule.job_type,
                    next_run_at=schedule.next_run(now, row.last_tick if row else None),
                    last_run_at=row.last_run_at if row else None,
                    last_job_id=row.last_job_id if row else None,
                )
            )
        return infos

    # -- internals -----------------------------------------------------------------------------

    async def _queue(self, name: str) -> QueueInfo:
        rows = await self._store.queues(name)
        return _queue_info(rows[0]) if rows else _queue_info(QueueRow(QueueSettingsRow(name), {}))

    def _params(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None,
        options: EnqueueOptions,
        batch: Sequence[JobInsertParams] = (),
    ) -> JobInsertParams:
        """The row of one job: its task's defaults, overridden by the options given (already
        ``checked``); ``batch`` holds the jobs before it in one ``enqueue_many``."""
        task = self._registry.get(job_type)
        stored, encoded, size = task.prepare_payload(payload)
        if size > self._config.max_payload_bytes:
            raise PayloadTooLarge(size, self._config.max_payload_bytes)
        return JobInsertParams(
            id=new_job_id(),
            job_type=task.name,
            queue=options.queue if options.queue is not None else task.queue,
            payload=stored,
            payload_json=encoded,
            priority=options.priority if options.priority is not None else task.priority,
            max_attempts=(
                options.max_attempts if options.max_attempts is not None else task.max_attempts
            ),
            delay=options.delay_seconds,
            run_at=options.run_at,
            idempotency_key=options.idempotency_key,
            depends_on=_dependencies(options.depends_on, batch),
        )

    async def _insert(
        self,
        params: Sequence[JobInsertParams],
        session: "AsyncSession | AsyncConnection | None",
    ) -> builtins.list[tuple[Job, bool]]:
        if self._tracing is not None:
            with self._tracing.sending(params) as traced:
                return await self._insert_rows(traced, session)
        return await self._insert_rows(params, session)

    async def _insert_rows(
        self,
        params: Sequence[JobInsertParams],
        session: "AsyncSession | AsyncConnection | None",
    ) -> builtins.list[tuple[Job, bool]]:
        conn = await connection_of(session)
        rows = {row.id: row for row in await self._store.insert(params, conn=conn)}
        keys = [p.idempotency_key for p in params if p.id not in rows and p.idempotency_key]
        existing: dict[str | None, JobRow] = {}
        if keys:
            existing = {
                row.idempotency_key: row for row in await self._store.get_by_keys(keys, conn=conn)
            }
        jobs = []
        for p in params:
            row = rows.get(p.id) or existing.get(p.idempotency_key)
            if row is None:  # pragma: no cover - the key's row vanished between two statements
                raise JobNotFound(p.id)
            jobs.append((row.to_job(), row.id == p.id))
        return jobs

    async def _status(self, job_id: str) -> JobStatus:
        row = await self._store.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return row.status


def _dependencies(
    depends_on: Sequence[str | int | Job] | None, batch: Sequence[JobInsertParams]
) -> tuple[str, ...]:
    """Checked ``depends_on`` as job ids: a batch index names an earlier job of the batch."""
    ids = []
    for item in depends_on or ():
        if isinstance(item, int):
            if item >= len(batch):
                raise InvalidOption(
                    "depends_on",
                    f"index {item} does not name an earlier job of this enqueue_many",
                )
            ids.append(batch[item].id)
        else:
            ids.append(item if isinstance(item, str) else item.id)
    return tuple(dict.fromkeys(ids))


def _queue_info(row: QueueRow) -> QueueInfo:
    settings = row.settings
    rate = None
    if settings.rate_limit is not None and settings.rate_period is not None:
        rate = str(Rate(settings.rate_limit, settings.rate_period))
    return QueueInfo(
        name=settings.name,
        paused=settings.paused,
        concurrency=settings.concurrency,
        rate=rate,
        counts={status: row.counts.get(status, 0) for status in JobStatus},
    )


def _queue_name(name: object) -> str:
    try:
        return check_queue_name(name)
    except ValueError as exc:
        raise InvalidOption("name", str(exc), location="path") from None


def _concurrency(value: object) -> int | None:
    if value is None:
        return None
    try:
        return check_concurrency(value)
    except ValueError as exc:
        raise InvalidOption("concurrency", str(exc)) from None


def _rate(value: object) -> Rate | None:
    if value is None:
        return None
    try:
        return Rate.parse(value)
    except ValueError as exc:
        raise InvalidOption("rate", str(exc)) from None


def _require_id(job_id: str) -> str:
    canonical = parse_job_id(job_id)
    if canonical is None:
        raise JobNotFound(str(job_id)[:100])
    return canonical


def _status(status: JobStatus | str | None) -> JobStatus | None:
    try:
        return JobStatus(status) if status is not None else None
    except ValueError:
        raise InvalidOption(
            "status", f"must be one of {[s.value for s in JobStatus]}", location="query"
        ) from None


def _filter(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 200 or not storable_text(value):
        raise InvalidOption(
            name,
            "must be a non-empty string of at most 200 chars, in UTF-8 and without NUL",
            location="query",
        )
    return value


def _limit(value: object) -> int:
    return _positive("limit", value, MAX_LIST_LIMIT)


def _positive(name: str, value: object, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidOption(name, f"must be an integer in 1..{most}", location="query")
    return value
