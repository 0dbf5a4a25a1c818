"""What the PostgreSQL and SQLite backends share: running named queries and shaping their rows.

Internal: not covered by semver. A dialect supplies its queries file, how it encodes times and
decodes rows, and what it does after a commit; the methods of the ``Backend`` Protocol live here
once, so both dialects keep the same semantics by construction.
"""

import functools
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi_equeue.backend import (
    JOB_COLUMNS,
    AttemptError,
    Capabilities,
    Claim,
    Column,
    JobClaimParams,
    JobCompleteParams,
    JobInsertParams,
    JobListParams,
    JobProgressParams,
    JobPruneParams,
    JobRow,
    MetricsSnapshot,
    Notification,
    NotificationKind,
    Notifier,
    QueueBacklogRow,
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
from fastapi_equeue.backends import _dependencies
from fastapi_equeue.backends._database import Database, Row
from fastapi_equeue.backends._queries import load_migrations, migration_script
from fastapi_equeue.config import RATE_MARGIN
from fastapi_equeue.jobs import JobStatus
from fastapi_equeue.sessions import after_commit
from fastapi_equeue.tasks import encode_json

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


logger = logging.getLogger(__name__)

WORKER_LOST = "WorkerLost: the worker running this attempt stopped sending heartbeats"


class SQLBackend(ABC):
    """A ``Backend`` over one dialect's ``Database`` and its ``queries.sql``."""

    dialect: ClassVar[str]
    capabilities: Capabilities
    notifier: Notifier

    def __init__(self, database: Database) -> None:
        self._db = database
        self._plan = tuple((name, self.decoders.get(kind)) for name, kind in JOB_COLUMNS)
        self._moved_listeners: list[Callable[[Sequence[JobRow]], None]] = []

    # -- what a dialect provides ---------------------------------------------------------------

    @abstractmethod
    def _bind(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add what the dialect's statements need beyond the caller's parameters."""

    @abstractmethod
    def _time(self, value: datetime) -> Any:
        """A timestamp as this dialect binds it."""

    def _time_value(self, value: datetime) -> Any:
        """A timestamp as a statement's parameter (``_time`` is its form inside JSON)."""
        return self._time(value)

    @abstractmethod
    def _seconds(self, value: float) -> Any:
        """A duration in seconds as this dialect's statements take it."""

    decoders: ClassVar[Mapping[Column, Callable[[Any], Any]]]
    """How this dialect's driver values become ``JobRow`` values, by column kind (the kinds
    missing here arrive as they are)."""

    def _decode(self, row: Row) -> JobRow:
        """One ``equeue_jobs`` row as a ``JobRow``, column by column as ``decoders`` says."""
        return JobRow(*[row[n] if f is None else f(row[n]) for n, f in self._plan])

    @abstractmethod
    def _decode_time(self, value: Any) -> datetime:
        """A timestamp column's value as an aware ``datetime``."""

    @abstractmethod
    def _stored_payload(self, row: Row, params: JobInsertParams) -> dict[str, Any]:
        """The payload of a row ``job_insert_many`` returned, as reading the job would give it."""

    @abstractmethod
    def _insert_values(self, params: Sequence[JobInsertParams]) -> dict[str, Any]:
        """The parameters of ``job_insert_many`` for these jobs."""

    @abstractmethod
    def _announce(self, conn: "AsyncConnection | None", notification: Notification) -> None:
        """Tell this process's listeners once the write is committed (if the database cannot)."""

    def _publish_local(self, conn: "AsyncConnection | None", notification: Notification) -> None:
        """Tell this process's listeners now, or once the host's transaction on ``conn`` commits."""
        if conn is None:
            self.notifier.publish_local(notification)
        else:
            after_commit(conn, lambda: self.notifier.publish_local(notification))

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:  # noqa: B027 - a no-op by design, not a missing override
        """Connect: connections open on first use."""

    async def close(self) -> None:
        """Close every connection."""
        await self._db.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction, under the dialect's lock."""
        applied_now: list[str] = []
        async with self._db.transaction() as tx:
            await tx.fetch("migration_lock", self._bind({}))
            await tx.fetch("migration_table_create", self._bind({}))
            applied = {row["name"] for row in await tx.fetch("migration_applied", self._bind({}))}
            for name, statements in load_migrations(self.dialect):
                if name in applied:
                    continue
                for statement in statements:
                    await tx.script(statement)
                await tx.fetch("migration_record", self._bind({"name": name}))
                applied_now.append(name)
        return applied_now

    def migration_script(self) -> str:
        """Every migration as one SQL script."""
        return migration_script(self.dialect)

    # -- jobs ------------------------------------------------------------------------------------

    async def change_marker(self) -> int:
        """A number that changes when any process writes jobs or queues."""
        (row,) = await self._db.fetch("change_marker", {}, read_only=True)
        return hash(tuple(row[column] for column in _MARKER_COLUMNS))

    async def job_cancel(self, job_id: str) -> JobRow | None:
        """Cancel a queued or retrying job, or flag a processing one; ``None`` if neither."""
        rows = await self._write("job_cancel", {"id": job_id})
        if not rows:
            return None
        # A waiting job is cancelled at once (it is done); a running one is asked to stop.
        kind: NotificationKind = "cancel" if rows[0].status is JobStatus.PROCESSING else "done"
        self._announce(None, Notification(kind, (job_id,)))
        if rows[0].release_pending:
            await self._release([job_id])
        return rows[0]

    @abstractmethod
    async def job_claim(self, params: JobClaimParams) -> Claim:
        """Mark up to ``params.limit`` due jobs of the queue processing for the worker, as far
        as the queue's settings allow."""

    def _claim_values(self, params: JobClaimParams) -> dict[str, Any]:
        return self._bind(
            {
                "worker_id": params.worker_id,
                "queue": params.queue,
                "limit": params.limit,
                "limited": params.limited,
                "rate_margin": self._seconds(RATE_MARGIN),
            }
        )

    async def job_complete_many(self, params: Sequence[JobCompleteParams]) -> dict[str, JobStatus]:
        """Write attempt outcomes in one statement; the ids the fence let through, each with
        the status its job ended in."""
        payload = json.dumps([self._outcome(p) for p in params])
        written = await self._db.fetch("job_complete_many", self._bind({"rows": payload}))
        statuses = {str(row["id"]): JobStatus(row["status"]) for row in written}
        done = tuple(str(r["id"]) for r in written if JobStatus(r["status"]).is_final)
        if done:
            self._announce(None, Notification("done", done))
        requeued = tuple({r["queue"] for r in written if r["status"] == JobStatus.QUEUED})
        if requeued:
            self._announce(None, Notification("available", requeued))
        ended = [str(r["id"]) for r in written if r["release_pending"]]
        if ended:
            await self._release(ended)
        return statuses

    async def job_count(self, params: JobListParams, cap: int) -> int:
        """How many jobs match the filters of ``params``, counting no further than ``cap``."""
        values = {
            "cap": cap,
            "status": params.status.value if params.status else None,
            "job_type": params.job_type,
            "queue": params.queue,
        }
        (row,) = await self._db.fetch("job_count", self._bind(values), read_only=True)
        return int(row["count"])

    async def job_get(self, job_id: str, *, conn: "AsyncConnection | None" = None) -> JobRow | None:
        """One job by id."""
        rows = await self._read("job_get", {"id": job_id}, conn)
        return rows[0] if rows else None

    async def job_get_by_keys(
        self, keys: Sequence[str], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """The jobs holding these idempotency keys."""
        return await self._read("job_get_by_keys", {"keys": json.dumps(list(keys))}, conn)

    async def job_insert_many(
        self, params: Sequence[JobInsertParams], *, conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        """Insert jobs in one statement; rows whose idempotency key exists are skipped.

        The statement returns only what the database decided (id, times, and where the database
        normalises JSON the payload): the rest of each row is what was inserted.
        """
        if not params:
            return []
        if any(p.depends_on for p in params):
            return await self._insert_linked(params, conn)
        name, values = self._insert_statement(params)
        try:
            written = await self._run(name, values, conn)
        except ConnectionResetError:
            if conn is not None:
                raise  # the host's transaction is the host's to retry
            # The insert may have committed before the connection was lost. Sent again, a row
            # whose id exists is skipped; read back, it is the job the first try inserted.
            written = await self._run(name, values, None, idempotent=True)
            return await self._with_committed(params, self._inserted_rows(params, written))
        rows = self._inserted_rows(params, written)
        if rows:
            self._announce(conn, Notification("available", tuple({row.queue for row in rows})))
        return rows

    def _inserted_rows(
        self, params: Sequence[JobInsertParams], written: Sequence[Row]
    ) -> list[JobRow]:
        by_id = {p.id: p for p in params}
        rows = []
        for row in written:
            p = by_id[str(row["id"])]
            rows.append(
                _inserted(
                    p,
                    self._stored_payload(row, p),
                    self._decode_time(row["created_at"]),
                    self._decode_time(row["scheduled_at"]),
                )
            )
        return rows

    async def _with_committed(
        self, params: Sequence[JobInsertParams], rows: list[JobRow]
    ) -> list[JobRow]:
        """``rows`` and the jobs of ``params`` that an earlier try of the insert committed."""
        found = {row.id for row in rows}
        earlier = [await self.job_get(p.id) for p in params if p.id not in found]
        rows += [row for row in earlier if row is not None]
        if rows:
            self._announce(None, Notification("available", tuple({row.queue for row in rows})))
        return rows

    # -- chains --------------------------------------------------------------------------------

    async def _insert_linked(
        self, params: Sequence[JobInsertParams], conn: "AsyncConnection | None"
    ) -> list[JobRow]:
        """Insert jobs that wait for others, and link them, in one transaction: ours, or the
        host's on ``conn``."""

        async def insert(run: _dependencies.Run) -> list[JobRow]:
            name, values = self._insert_statement(params)
            return self._inserted_rows(params, await run(name, values))

        if conn is not None:

            async def on_host(name: str, values: dict[str, Any]) -> Sequence[Row]:
                return await self._run(name, values, conn)

            rows, moved = await _dependencies.insert_linked(
                params, on_host, lambda: insert(on_host), self._decode
            )
        else:
            async with self._db.transaction() as tx:

                async def on_ours(name: str, values: dict[str, Any]) -> Sequence[Row]:
                    return await tx.fetch(name, self._bind(values))

                rows, moved = await _dependencies.insert_linked(
                    params, on_ours, lambda: insert(on_ours), self._decode
                )
        if rows:
            self._announce(conn, Notification("available", tuple({row.queue for row in rows})))
        self._announce_moved(conn, moved)
        return rows

    async def _release(self, ended: Sequence[str]) -> None:
        """Release the dependents of jobs that just ended (see ``_dependencies``). A failure is
        left to the sweep: the ended jobs keep ``release_pending`` until it succeeds."""
        try:
            async with self._db.transaction() as tx:

                async def run(name: str, values: dict[str, Any]) -> Sequence[Row]:
                    return await tx.fetch(name, self._bind(values))

                moved = await _dependencies.release(run, ended)
        except Exception as exc:
            logger.warning(
                "releasing the dependents of %d ended jobs failed (%s: %s); a worker's sweep "
                "will release them",
                len(ended),
                type(exc).__name__,
                exc,
            )
            return
        self._announce_moved(None, moved)

    def on_dependents_moved(self, listener: Callable[[Sequence[JobRow]], None]) -> None:
        """Call ``listener`` with the dependents each release moved, once it is committed."""
        self._moved_listeners.append(listener)

    def _announce_moved(self, conn: "AsyncConnection | None", moved: Sequence[Row]) -> None:
        rows = [self._decode(r) for r in moved]
        released = tuple({r.queue for r in rows if r.status is not JobStatus.CANCELLED})
        if released:
            self._announce(conn, Notification("available", released))
        cancelled = tuple(r.id for r in rows if r.status is JobStatus.CANCELLED)
        if cancelled:
            self._announce(conn, Notification("done", cancelled))
        if rows:
            for listener in self._moved_listeners:
                if conn is None:
                    listener(rows)
                else:
                    after_commit(conn, functools.partial(listener, rows))

    async def job_release_pending(self, limit: int) -> int:
        """Release the dependents of up to ``limit`` ended jobs whose release did not happen;
        how many such jobs there were."""
        rows = await self._db.fetch("job_release_pending", self._bind({"limit": limit}))
        ended = [str(row["id"]) for row in rows]
        if ended:
            await self._release(ended)
        return len(ended)

    async def job_list(self, params: JobListParams) -> list[JobRow]:
        """A page of jobs, newest first."""
        after_created, after_id = params.after or (None, None)
        values = {
            "limit": params.limit,
            "status": params.status.value if params.status else None,
            "job_type": params.job_type,
            "queue": params.queue,
            "after_created": self._time_value(after_created) if after_created else None,
            "after_id": after_id,
        }
        return await self._read("job_list", values, None)

    async def job_processing_by_worker(self, worker_id: str) -> list[JobRow]:
        """The jobs the database holds as running on ``worker_id``."""
        return await self._read("job_processing_by_worker", {"worker_id": worker_id}, None)

    async def job_progress(self, params: JobProgressParams) -> bool:
        """Store an attempt's progress; whether the fence let it through."""
        progress = {
            "fraction": params.fraction,
            "message": params.message,
            "at": params.at.isoformat(),
        }
        values = {
            "id": params.id,
            "attempt": params.attempt,
            "worker_id": params.worker_id,
            "progress": json.dumps(progress),
        }
        return bool(await self._db.fetch("job_progress", self._bind(values)))

    async def job_prune(self, params: JobPruneParams) -> dict[JobStatus, int]:
        """Delete finished jobs past their retention, a batch at a time; how many, by status."""
        values = {
            "retention": _optional(self._seconds, params.retention),
            "failed_retention": _optional(self._seconds, params.failed_retention),
            "limit": params.limit,
        }
        rows = await self._db.fetch("job_prune", self._bind(values))
        counts: dict[JobStatus, int] = {}
        for row in rows:
            status = JobStatus(row["status"])
            counts[status] = counts.get(status, 0) + 1
        return counts

    async def job_rescue_stalled(self, stalled_after: float, worker_id: str) -> Rescue:
        """Put back (or fail) processing jobs whose worker has been silent for
        ``stalled_after``, and forget such workers (never ``worker_id``)."""
        values = self._bind(
            {
                "stalled_after": self._seconds(stalled_after),
                "error": WORKER_LOST,
                "worker_id": worker_id,
            }
        )
        async with self._db.transaction() as tx:
            rows = [self._decode(row) for row in await tx.fetch("job_rescue_stalled", values)]
            forgotten = [str(row["id"]) for row in await tx.fetch("worker_forget", values)]
        requeued = tuple({row.queue for row in rows if row.status is JobStatus.QUEUED})
        if requeued:
            self._announce(None, Notification("available", requeued))
        done = tuple(row.id for row in rows if row.status.is_final)
        if done:
            self._announce(None, Notification("done", done))
        ended = [row.id for row in rows if row.release_pending]
        if ended:
            await self._release(ended)
        return Rescue(jobs=rows, workers=forgotten)

    async def job_throughput(self, since: datetime) -> list[ThroughputRow]:
        """Completed and failed jobs per minute since ``since``."""
        values = self._bind({"since": self._time_value(since)})
        rows = await self._db.fetch("job_throughput", values, read_only=True)
        return [
            ThroughputRow(
                minute=datetime.fromtimestamp(float(row["minute"]), UTC),
                status=JobStatus(row["status"]),
                count=int(row["count"]),
            )
            for row in rows
        ]

    async def job_retry(self, job_id: str) -> JobRow | None:
        """Queue a failed or cancelled job again; ``None`` if it is neither."""
        rows = await self._write("job_retry", {"id": job_id})
        if not rows:
            return None
        self._announce(None, Notification("available", (rows[0].queue,)))
        return rows[0]

    async def metrics_snapshot(self, stalled_after: float) -> MetricsSnapshot:
        """Every queue's backlog, from the claimable index alone, and how many workers beat
        within ``stalled_after`` seconds."""
        values = self._bind({"stalled_after": self._seconds(stalled_after)})
        rows = await self._db.fetch("metrics_snapshot", values, read_only=True)
        queues = tuple(
            QueueBacklogRow(
                queue=row["queue"],
                paused=bool(row["paused"]),
                backlog=int(row["backlog"]),
                oldest_age=max(0.0, float(row["oldest_age"]))
                if row["oldest_age"] is not None
                else None,
            )
            for row in rows
            if row["queue"] is not None
        )
        return MetricsSnapshot(queues=queues, workers=int(rows[0]["workers"]) if rows else 0)

    async def queue_configure(self, params: QueueConfigureParams) -> None:
        """Set a queue's limits (its settings row is created if it has none)."""
        await self._db.fetch("queue_configure", self._bind(asdict(params)))
        self._announce(None, Notification("queue", (params.name,)))

    async def queue_find(self, queues: tuple[str, ...] | None) -> list[QueueSettingsRow]:
        """The queues that have claimable jobs or settings, among ``queues`` (``None``: all)."""
        values = {"queues": json.dumps(list(queues)) if queues is not None else None}
        rows = await self._db.fetch("queue_find", self._bind(values), read_only=True)
        return [_settings(row, claimable=bool(row["claimable"])) for row in rows]

    async def queue_list(self, name: str | None) -> list[QueueRow]:
        """Every queue that holds jobs or has settings (or only ``name``), with its counts."""
        rows = await self._db.fetch("queue_list", self._bind({"name": name}), read_only=True)
        queues: dict[str, QueueRow] = {}
        for row in rows:
            queue = queues.setdefault(row["name"], QueueRow(_settings(row), {}))
            if row["status"] is not None:
                queue.counts[JobStatus(row["status"])] = int(row["count"])
        return list(queues.values())

    async def queue_pause(self, name: str, paused: bool) -> None:
        """Pause or resume a queue (its settings row is created if it has none)."""
        await self._db.fetch("queue_pause", self._bind({"name": name, "paused": paused}))
        self._announce(None, Notification("queue", (name,)))

    async def queue_stats(self) -> list[QueueStatsRow]:
        """Job counts per queue and status."""
        return [
            QueueStatsRow(
                queue=row["queue"],
                status=JobStatus(row["status"]),
                count=row["count"],
                oldest_due_age=(
                    float(row["oldest_due_age"]) if row["oldest_due_age"] is not None else None
                ),
                finished_last_minute=int(row["finished_last_minute"] or 0),
            )
            for row in await self._db.fetch("queue_stats", self._bind({}), read_only=True)
        ]

    # -- schedules -------------------------------------------------------------------------------

    async def schedule_claim(self, params: ScheduleClaimParams) -> JobRow | None:
        """Move the schedule on to the tick and insert its job in one transaction, if no
        process has enqueued that tick (or a later one); the job, or ``None``."""
        job = params.job
        values = self._bind(
            {
                **self._insert_one(job),
                "name": params.name,
                "cron": params.cron,
                "timezone": params.timezone,
                "tick": self._time_value(params.tick),
                "job_id": job.id,
            }
        )
        async with self._db.transaction() as tx:
            if not await tx.fetch("schedule_claim", values):
                return None
            written = await tx.fetch("job_insert", values)
        rows = self._inserted_rows([job], written)
        if not rows:  # pragma: no cover - a fresh uuid never conflicts
            return None
        self._announce(None, Notification("available", (job.queue,)))
        return rows[0]

    async def schedule_list(self, names: Sequence[str]) -> list[ScheduleRow]:
        """The schedules of these names that the table holds, by name."""
        values = self._bind({"names": json.dumps(list(names))})
        rows = await self._db.fetch("schedule_list", values, read_only=True)
        return [self._schedule(row) for row in rows]

    async def schedule_register(self, params: ScheduleRegisterParams) -> ScheduleRow:
        """Write the schedule's definition, keeping how far it has run unless its cron or
        time zone changed; the row as it now is."""
        values = {
            "name": params.name,
            "cron": params.cron,
            "timezone": params.timezone,
            "job_type": params.job_type,
            "payload": params.payload_json,
            "last_tick": self._time_value(params.last_tick),
        }
        (row,) = await self._db.fetch("schedule_register", self._bind(values), idempotent=True)
        return self._schedule(row)

    def _schedule(self, row: Row) -> ScheduleRow:
        def time(value: Any) -> datetime | None:
            return None if value is None else self._decode_time(value)

        return ScheduleRow(
            name=row["name"],
            cron=row["cron"],
            timezone=row["timezone"],
            job_type=row["job_type"],
            last_tick=self._decode_time(row["last_tick"]),
            last_run_at=time(row["last_run_at"]),
            last_job_id=None if row["last_job_id"] is None else str(row["last_job_id"]),
            updated_at=self._decode_time(row["updated_at"]),
        )

    # -- workers ---------------------------------------------------------------------------------

    async def worker_deregister(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly."""
        await self._db.fetch("worker_deregister", self._bind({"id": worker_id}), idempotent=True)

    async def worker_heartbeat(self, worker_id: str) -> bool:
        """Prove the worker alive; ``False`` if its row is gone."""
        rows = await self._db.fetch(
            "worker_heartbeat", self._bind({"id": worker_id}), idempotent=True
        )
        return bool(rows)

    async def worker_list(self) -> list[WorkerRow]:
        """Every registered worker process, with the jobs it runs."""
        rows = await self._db.fetch("worker_list", self._bind({}), read_only=True)
        return [
            WorkerRow(
                id=str(row["id"]),
                hostname=row["hostname"],
                pid=int(row["pid"]),
                queues=_queue_names(row["queues"]),
                concurrency=int(row["concurrency"]),
                started_at=self._decode_time(row["started_at"]),
                last_beat_at=self._decode_time(row["last_beat_at"]),
                running=int(row["running"]),
            )
            for row in rows
        ]

    async def worker_register(self, params: WorkerParams) -> None:
        """Record a starting worker process."""
        values = {
            "id": params.id,
            "hostname": params.hostname,
            "pid": params.pid,
            "concurrency": params.concurrency,
            "queues": json.dumps(list(params.queues)) if params.queues is not None else None,
        }
        await self._db.fetch("worker_register", self._bind(values), idempotent=True)

    # -- plumbing --------------------------------------------------------------------------------

    async def _write(
        self, name: str, values: dict[str, Any], conn: "AsyncConnection | None" = None
    ) -> list[JobRow]:
        return [self._decode(row) for row in await self._run(name, values, conn)]

    async def _read(
        self, name: str, values: dict[str, Any], conn: "AsyncConnection | None"
    ) -> list[JobRow]:
        return [self._decode(row) for row in await self._run(name, values, conn, read_only=True)]

    async def _run(
        self,
        name: str,
        values: dict[str, Any],
        conn: "AsyncConnection | None",
        *,
        read_only: bool = False,
        idempotent: bool = False,
    ) -> Sequence[Row]:
        """Run a statement on our own connections, or in the host's transaction on ``conn``."""
        if conn is None:
            return await self._db.fetch(
                name, self._bind(values), read_only=read_only, idempotent=idempotent
            )
        sql, parameters = self._db.for_host(name, self._bind(values))
        result = await conn.exec_driver_sql(sql, parameters)
        return list(result.mappings()) if result.returns_rows else []

    def _insert_statement(self, params: Sequence[JobInsertParams]) -> tuple[str, dict[str, Any]]:
        """The insert of ``params`` and its parameters: ``job_insert`` for the most common call,
        one job, with no arrays to unpack."""
        if len(params) == 1:
            return "job_insert", self._insert_one(params[0])
        return "job_insert_many", self._insert_values(params)

    def _insert_one(self, p: JobInsertParams) -> dict[str, Any]:
        """The parameters of ``job_insert``."""
        return {
            "id": p.id,
            "job_type": p.job_type,
            "queue": p.queue,
            "payload": payload_text(p),
            "priority": p.priority,
            "max_attempts": p.max_attempts,
            "delay": self._seconds(p.delay),
            "run_at": self._time_value(p.run_at) if p.run_at is not None else None,
            "idempotency_key": p.idempotency_key,
            "trace_context": trace_context_text(p),
        }

    def _outcome(self, p: JobCompleteParams) -> dict[str, Any]:
        error = None
        if p.error is not None:
            error = {
                "attempt": p.error.attempt,
                "error": p.error.error,
                "traceback": p.error.traceback,
                "at": p.error.at.isoformat(),
                "worker_id": p.error.worker_id,
            }
        return {
            "id": p.id,
            "attempt": p.attempt,
            "worker_id": p.worker_id,
            "status": p.status,
            # Encoded here so that a JSON string result survives SQLite's json_extract as JSON.
            "result": json.dumps(p.result) if p.status == "completed" else None,
            "error": error,
            "retry_delay": self._seconds(p.retry_delay),
        }


def payload_text(p: JobInsertParams) -> str:
    """The payload's JSON text: the caller's, or encoded here when it has none."""
    return p.payload_json if p.payload_json is not None else encode_json(p.payload)


def trace_context_text(p: JobInsertParams) -> str | None:
    """The trace context's JSON text, or ``None`` for a job enqueued without tracing."""
    return None if p.trace_context is None else json.dumps(p.trace_context)


def decode_errors(value: Any) -> tuple[AttemptError, ...]:
    """The stored error history (a JSON array, decoded or not) as ``AttemptError`` values."""
    items = json.loads(value) if isinstance(value, str) else value or []
    return tuple(
        AttemptError(
            attempt=item.get("attempt", 0),
            error=item.get("error", ""),
            traceback=item.get("traceback"),
            at=datetime.fromisoformat(item["at"]),
            worker_id=item.get("worker_id"),
        )
        for item in items
    )


def _inserted(
    p: JobInsertParams, payload: dict[str, Any], created_at: datetime, scheduled_at: datetime
) -> JobRow:
    # What the insert decided; every other column holds a new job's default.
    return JobRow(
        id=p.id,
        job_type=p.job_type,
        queue=p.queue,
        payload=payload,
        priority=p.priority,
        max_attempts=p.max_attempts,
        created_at=created_at,
        scheduled_at=scheduled_at,
        idempotency_key=p.idempotency_key,
        trace_context=p.trace_context,
    )


def claim_order(row: JobRow) -> tuple[int, datetime, str]:
    """The order a claim takes jobs in: priority, then due time, then id."""
    return (-row.priority, row.scheduled_at, row.id)


def _settings(row: Row, *, claimable: bool = False) -> QueueSettingsRow:
    return QueueSettingsRow(
        name=row["name"],
        paused=bool(row["paused"]),
        concurrency=row["concurrency"],
        rate_limit=row["rate_limit"],
        rate_period=row["rate_period"],
        claimable=claimable,
    )


_MARKER_COLUMNS = ("waiting", "running", "created", "completed", "failed", "cancelled", "settings")


def _queue_names(value: Any) -> tuple[str, ...] | None:
    """A worker's queues as stored: a JSON array (text on SQLite), or ``NULL`` for every queue."""
    if value is None:
        return None
    return tuple(json.loads(value) if isinstance(value, str) else value)


def _optional(convert: Callable[[float], Any], value: float | None) -> Any:
    return None if value is None else convert(value)
