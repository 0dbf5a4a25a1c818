"""Takes back the jobs of workers that went silent, and releases the dependents of jobs whose
release a dead worker left undone. Safe to run from every worker at once: the statements skip
locked rows or are idempotent."""

from fastapi_equeue.clock import Clock
from fastapi_equeue.runtime.service import Periodic
from fastapi_equeue.store import Store


class Rescuer(Periodic):
    """Every ``interval``: every processing job of a worker silent for ``stalled_after`` goes
    back (or fails, with no attempt left), the silent workers are forgotten, and ended jobs
    whose dependents still wait for their release have them released."""

    name = "rescuer"

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str,
        stalled_after: float,
        interval: float,
        clock: Clock,
    ) -> None:
        super().__init__(interval=interval, clock=clock)
        self._store = store
        self._worker_id = worker_id
        self._stalled_after = stalled_after

    async def tick(self) -> None:
        """One sweep."""
        await self._store.rescue(self._stalled_after, self._worker_id)
        await self._store.release_pending()
