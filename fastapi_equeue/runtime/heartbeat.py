"""Registers this worker before anything is claimed, proves it alive every
``heartbeat_interval``, and removes it once everything it held is handed back."""

import os
import socket

from fastapi_equeue.backend import WorkerParams
from fastapi_equeue.clock import Clock
from fastapi_equeue.runtime.attempts import Attempts
from fastapi_equeue.runtime.service import Periodic
from fastapi_equeue.store import Store


class Heartbeat(Periodic):
    """One worker's row in the workers table, kept fresh.

    If a beat finds the row gone, the worker was declared lost (it missed ``stalled_after``,
    say under a stopped process or a blocked loop) and its jobs were taken back: its running
    attempts are abandoned here, and the worker registers again.
    """

    name = "heartbeat"

    def __init__(
        self,
        store: Store,
        attempts: Attempts,
        *,
        worker_id: str,
        queues: tuple[str, ...] | None,
        interval: float,
        clock: Clock,
    ) -> None:
        super().__init__(interval=interval, clock=clock)
        self._store = store
        self._attempts = attempts
        self._params = WorkerParams(
            id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=attempts.concurrency,
            queues=queues,
        )

    async def start(self) -> None:
        """Record the worker, once the database is reached: a claim requires its row."""
        await self._store.wait_ready()
        await self._store.register(self._params)

    async def tick(self) -> None:
        """Refresh the worker's row; re-register after being declared lost."""
        if await self._store.beat(self._params.id):
            return
        self._attempts.cancel_all("lost")
        await self._store.register(self._params)

    async def finish(self) -> None:
        """Remove the worker's row, unless attempts still run (the rescuer then takes them)."""
        if not self._attempts.busy:
            await self._store.deregister(self._params.id)
