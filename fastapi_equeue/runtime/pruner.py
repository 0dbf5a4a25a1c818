"""Retention: deletes finished jobs once they are older than ``retention`` (completed and
cancelled ones) or ``failed_retention`` (failed ones), in small batches, from every worker.

Each statement deletes at most ``PRUNE_BATCH`` jobs of each status, oldest first, and skips rows
another worker is deleting, so many workers can prune at once, and no statement holds its locks
long.
A deleted job's idempotency key is free again.
"""

import asyncio

from fastapi_equeue.backend import JobPruneParams
from fastapi_equeue.clock import Clock
from fastapi_equeue.config import PRUNE_BATCH
from fastapi_equeue.runtime.service import Periodic
from fastapi_equeue.store import Store

MAX_INTERVAL = 60.0
MAX_BATCHES = 100
"""Batches per round at most; the next round goes on where this one stopped."""


def prune_interval(retention: float | None, failed_retention: float | None, poll: float) -> float:
    """How often to prune: a tenth of the shortest retention, between ``poll`` and a minute, so
    a job outlives its retention by at most a tenth of it (or a minute)."""
    shortest = min((r for r in (retention, failed_retention) if r is not None), default=None)
    if shortest is None:
        return MAX_INTERVAL
    return max(poll, min(MAX_INTERVAL, shortest / 10))


class Pruner(Periodic):
    """Deletes finished jobs past their retention."""

    name = "pruner"

    def __init__(
        self,
        store: Store,
        *,
        retention: float | None,
        failed_retention: float | None,
        interval: float,
        clock: Clock,
        batch: int = PRUNE_BATCH,
    ) -> None:
        super().__init__(interval=interval, clock=clock)
        self._store = store
        self._params = JobPruneParams(
            retention=retention, failed_retention=failed_retention, limit=batch
        )

    async def tick(self) -> None:
        """Delete batch after batch until a batch comes back short."""
        if self._params.retention is None and self._params.failed_retention is None:
            return
        for _ in range(MAX_BATCHES):
            counts = await self._store.prune(self._params)
            if max(counts.values(), default=0) < self._params.limit:
                return
            await asyncio.sleep(0)  # let claims and completions in between batches
