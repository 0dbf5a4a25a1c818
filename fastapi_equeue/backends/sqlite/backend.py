"""``SQLiteBackend``: the named queries of ``queries.sql`` run on aiosqlite."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi_equeue.backend import (
    BackendOptions,
    Capabilities,
    JobInsertParams,
    JobRow,
    Notification,
)
from fastapi_equeue.backends._notify import LocalNotifier
from fastapi_equeue.backends._sql import Row, SQLBackend, decode_errors
from fastapi_equeue.backends.sqlite.database import SQLiteDatabase
from fastapi_equeue.clock import SystemClock
from fastapi_equeue.jobs import JobStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class SQLiteBackend(SQLBackend):
    """SQLite on a file: one writer at a time, wake-ups within this process, polling across."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, path: str, options: BackendOptions) -> None:
        super().__init__(SQLiteDatabase(path, pool_size=options.pool_size))
        self.capabilities = Capabilities(listen_notify=False)
        self.notifier = LocalNotifier()
        self._clock = options.clock or SystemClock()

    def _bind(self, params: dict[str, Any]) -> dict[str, Any]:
        params["now"] = self._time(self._clock.now())
        return params

    def _time(self, value: datetime) -> Any:
        return (value - EPOCH) // MICROSECOND

    def _seconds(self, value: float) -> Any:
        return round(value * 1_000_000)

    def _decode_time(self, value: Any) -> datetime:
        return _datetime(value)

    def _stored_payload(self, row: Row, params: JobInsertParams) -> dict[str, Any]:
        # Stored as the JSON text of this very payload, which reads back equal.
        return params.payload

    def _insert_values(self, params: Sequence[JobInsertParams]) -> dict[str, Any]:
        # The rows of job_insert, as one JSON array; each payload travels as its JSON text.
        return {"rows": json.dumps([self._insert_one(p) for p in params])}

    def _announce(self, conn: "AsyncConnection | None", notification: Notification) -> None:
        self._publish_local(conn, notification)

    def _decode(self, row: Row) -> JobRow:
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
