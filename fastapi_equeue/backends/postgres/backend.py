"""``PostgresBackend``: the named queries of ``queries.sql`` run on asyncpg."""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi_equeue.backend import (
    BackendOptions,
    Capabilities,
    Claim,
    Column,
    JobClaimParams,
    JobInsertParams,
    Notification,
    Notifier,
)
from fastapi_equeue.backends._database import Row
from fastapi_equeue.backends._notify import LocalNotifier
from fastapi_equeue.backends._sql import (
    SQLBackend,
    claim_order,
    decode_errors,
    payload_text,
    trace_context_text,
)
from fastapi_equeue.backends.postgres.database import PostgresDatabase
from fastapi_equeue.backends.postgres.notifier import PostgresNotifier
from fastapi_equeue.jobs import JobStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


def _text(value: object) -> str | None:
    # uuid columns arrive as UUID objects; ids are text everywhere else.
    return None if value is None else str(value)


class PostgresBackend(SQLBackend):
    """PostgreSQL is the queue: row locks for claims, NOTIFY for wake-ups, its clock for time."""

    dialect: ClassVar[str] = "postgres"
    decoders: ClassVar[Mapping[Column, Callable[[Any], Any]]] = {
        Column.ID: _text,
        Column.STATUS: JobStatus,
        Column.ERRORS: decode_errors,
    }

    def __init__(self, dsn: str, listen_dsn: str, options: BackendOptions) -> None:
        super().__init__(
            PostgresDatabase(dsn, pool_size=options.pool_size, prepared=options.prepared_statements)
        )
        self._clock = options.clock
        self._listening = not options.poll_only
        self.capabilities = Capabilities(listen_notify=self._listening)
        self.notifier: Notifier = (
            PostgresNotifier(listen_dsn, self._probe) if self._listening else LocalNotifier()
        )

    async def _probe(self, token: str) -> None:
        await self._db.fetch("notifier_probe", {"token": token})

    async def close(self) -> None:
        """Stop listening and close every pooled connection."""
        await self.notifier.stop()
        await super().close()

    async def job_claim(self, params: JobClaimParams) -> Claim:
        """One statement claims; for a limited queue, one that enforces its settings under a
        lock of its row (see queries.sql)."""
        values = self._claim_values(params)
        if not params.limited:
            rows = await self._db.fetch("job_claim", values)
            return Claim(jobs=sorted(map(self._decode, rows), key=claim_order), room=params.limit)
        rows = await self._db.fetch("job_claim_limited", values)
        jobs = sorted((self._decode(row) for row in rows if row["id"] is not None), key=claim_order)
        return Claim(jobs=jobs, room=rows[0]["room"] if rows else 0)

    def _bind(self, params: dict[str, Any]) -> dict[str, Any]:
        # NULL lets the statement take the database's clock: one clock for every machine.
        params["now"] = self._clock.now() if self._clock is not None else None
        return params

    def _time(self, value: datetime) -> Any:
        return value.isoformat()

    def _time_value(self, value: datetime) -> Any:
        return value  # asyncpg binds an aware datetime as timestamptz

    def _seconds(self, value: float) -> Any:
        return value

    def _decode_time(self, value: Any) -> datetime:
        return value  # type: ignore[no-any-return]

    def _stored_payload(self, row: Row, params: JobInsertParams) -> dict[str, Any]:
        # jsonb rewrites numbers (2.5e+22 reads back as 25000000000000000000000): what a later
        # read returns is what the insert returns.
        return row["payload"]  # type: ignore[no-any-return]

    def _insert_values(self, params: Sequence[JobInsertParams]) -> dict[str, Any]:
        # One array per column: asyncpg encodes them in C, and payloads go as the text they
        # were validated into, never encoded twice.
        return {
            "ids": [p.id for p in params],
            "job_types": [p.job_type for p in params],
            "queues": [p.queue for p in params],
            "payloads": [payload_text(p) for p in params],
            "priorities": [p.priority for p in params],
            "max_attempts": [p.max_attempts for p in params],
            "delays": [p.delay for p in params],
            "run_ats": [p.run_at for p in params],
            "keys": [p.idempotency_key for p in params],
            "trace_contexts": [trace_context_text(p) for p in params],
        }

    def _announce(self, conn: "AsyncConnection | None", notification: Notification) -> None:
        # The statements NOTIFY themselves, so every listening process (this one included) hears
        # it at commit; a process that listens nowhere tells its own listeners itself.
        if not self._listening:
            self._publish_local(conn, notification)
