"""``SQLiteBackend``: the named queries of ``queries.sql`` run on aiosqlite."""

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi_equeue.backend import (
    BackendOptions,
    Capabilities,
    Claim,
    Column,
    JobClaimParams,
    JobInsertParams,
    Notification,
)
from fastapi_equeue.backends._database import Row
from fastapi_equeue.backends._notify import LocalNotifier
from fastapi_equeue.backends._sql import SQLBackend, claim_order, decode_errors
from fastapi_equeue.backends.sqlite.database import SQLiteDatabase
from fastapi_equeue.clock import SystemClock
from fastapi_equeue.jobs import JobStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def _datetime(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


class SQLiteBackend(SQLBackend):
    """SQLite on a file: one writer at a time, wake-ups within this process, polling across."""

    dialect: ClassVar[str] = "sqlite"
    decoders: ClassVar[Mapping[Column, Callable[[Any], Any]]] = {
        Column.STATUS: JobStatus,
        Column.JSON: _json,
        Column.TIME: _optional_datetime,
        Column.FLAG: bool,
        Column.ERRORS: decode_errors,
    }

    def __init__(self, path: str, options: BackendOptions) -> None:
        super().__init__(SQLiteDatabase(path, pool_size=options.pool_size))
        self.capabilities = Capabilities(listen_notify=False)
        self.notifier = LocalNotifier()
        self._clock = options.clock or SystemClock()

    async def job_claim(self, params: JobClaimParams) -> Claim:
        """One statement; for a limited queue, the queue's room, the claim and its record, in
        one ``BEGIN IMMEDIATE`` transaction: SQLite's one write lock keeps every other claimer
        out from the first to the last."""
        if not params.limited:
            rows = await self._db.fetch("job_claim", self._claim_values(params))
            return Claim(jobs=sorted(map(self._decode, rows), key=claim_order), room=params.limit)
        async with self._db.transaction() as tx:
            # The time is read once the write lock is held: starts recorded with a time from
            # before a wait for the lock would let the next window open early.
            values = self._claim_values(params)
            (row,) = await tx.fetch("queue_room", values)
            room = int(row["room"])
            jobs = []
            if room > 0:
                jobs = [
                    self._decode(r) for r in await tx.fetch("job_claim", {**values, "limit": room})
                ]
            if jobs:
                await tx.fetch("queue_note_starts", {**values, "started": len(jobs)})
        jobs.sort(key=claim_order)
        return Claim(jobs=jobs, room=room)

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
