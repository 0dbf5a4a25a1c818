"""``SQLiteBackend``: the named queries of ``queries.sql`` run through SQLAlchemy on aiosqlite."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import RowMapping, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fastapi_equeue.backend import Capabilities, JobRow, Notification
from fastapi_equeue.backends._notify import LocalNotifier
from fastapi_equeue.backends._sql import READ_ONLY, SQLBackend, decode_errors
from fastapi_equeue.clock import Clock
from fastapi_equeue.jobs import JobStatus

BUSY_TIMEOUT_MS = 30_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def configure_engine(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE for every writing transaction of this engine.

    pysqlite's own transaction handling begins lazily and DEFERRED, so a claim could read rows and
    then fail to upgrade to a write lock; taking the lock at BEGIN makes writers wait their turn.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        # Reads begin DEFERRED: under WAL they never wait for a writer, not even for a host's
        # long transaction that holds the write lock.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class SQLiteBackend(SQLBackend):
    """SQLite on a file: one writer at a time, wake-ups within this process, polling across."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        super().__init__(engine)
        self.capabilities = Capabilities(listen_notify=False)
        self.notifier = LocalNotifier()
        self._clock = clock

    def _bind(self, params: dict[str, Any]) -> dict[str, Any]:
        params["now"] = round(self._clock.time() * 1_000_000)
        return params

    def _time(self, value: datetime) -> Any:
        return (value - EPOCH) // MICROSECOND

    def _seconds(self, value: float) -> Any:
        return round(value * 1_000_000)

    def _announce(self, conn: AsyncConnection | None, notification: Notification) -> None:
        if conn is None:
            self.notifier.publish_local(notification)
            return
        # The host's transaction carries the write: tell the workers only once it commits.
        event.listen(
            conn.sync_connection,
            "commit",
            lambda _conn: self.notifier.publish_local(notification),
            once=True,
        )

    def _decode(self, row: RowMapping) -> JobRow:
        result = row["result"]
        return JobRow(
            id=row["id"],
            job_type=row["job_type"],
            queue=row["queue"],
            status=JobStatus(row["status"]),
            payload=json.loads(row["payload"]),
            priority=row["priority"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            created_at=_datetime(row["created_at"]),
            scheduled_at=_datetime(row["scheduled_at"]),
            started_at=_optional_datetime(row["started_at"]),
            finished_at=_optional_datetime(row["finished_at"]),
            result=json.loads(result) if result is not None else None,
            last_error=row["last_error"],
            errors=decode_errors(row["errors"]),
            idempotency_key=row["idempotency_key"],
            worker_id=row["worker_id"],
            cancel_requested=bool(row["cancel_requested"]),
        )


def _datetime(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)
