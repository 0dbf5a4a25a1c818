"""The driver seam under the SQL backends: a dialect's ``Database``, which runs named statements.

Internal: not covered by semver. ``SQLBackend`` (``_sql.py``) writes every ``Backend`` method
once against this; each dialect's ``database.py`` implements it on its driver, and is the only
code that touches one.
"""

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

WORKER_STATEMENTS = frozenset(
    {
        "job_claim",
        "job_claim_limited",
        "job_complete_many",
        "job_processing_by_worker",
        "worker_heartbeat",
        "worker_register",
        "worker_deregister",
    }
)
"""The statements that keep a worker's jobs moving and its ownership proven. Each dialect runs
them on connections of their own (a quarter of the pool, at least one), so that requests or
task code keeping every other connection busy cannot starve heartbeats or completions."""


def worker_lane_size(pool_size: int, most: int) -> int:
    """Of ``pool_size`` connections, how many to keep for ``WORKER_STATEMENTS`` (at most
    ``most``); 0 when the pool is a single connection, which they then share."""
    return min(most, max(1, pool_size // 4)) if pool_size > 1 else 0


class Row(Protocol):
    """A result row by column name (an asyncpg ``Record``, a ``sqlite3.Row``, a ``RowMapping``)."""

    def __getitem__(self, key: str, /) -> Any:
        """The value of column ``key``."""


class Statements(Protocol):
    """One connection inside an open transaction, running named statements."""

    async def fetch(self, name: str, values: Mapping[str, Any]) -> list[Row]:
        """Run the named statement; its rows."""

    async def script(self, sql: str) -> None:
        """Run one statement of a migration file as it is."""


class Database(Protocol):
    """A dialect's connections, through its driver: the only code that touches them."""

    async def close(self) -> None:
        """Close every connection."""

    async def fetch(
        self,
        name: str,
        values: Mapping[str, Any],
        *,
        read_only: bool = False,
        idempotent: bool = False,
    ) -> list[Row]:
        """Run the named statement on its own (atomically) and return its rows. A statement that
        is ``read_only`` or ``idempotent`` may be sent again when its connection was lost."""

    def transaction(self) -> AbstractAsyncContextManager[Statements]:
        """A connection in a transaction that commits when the block ends without error."""

    def for_host(self, name: str, values: Mapping[str, Any]) -> tuple[str, Any]:
        """The named statement and its parameters as a host's SQLAlchemy connection runs them."""
