"""Registers this worker process and proves it alive every ``heartbeat_interval``."""

import logging
import os
import socket
from collections.abc import Callable

from fastapi_equeue.backend import Backend, WorkerParams

logger = logging.getLogger(__name__)


class Heartbeat:
    """One worker's row in the workers table, kept fresh.

    If a beat finds the row gone, the worker was declared lost (it missed ``stalled_after``,
    say under a stopped process or a blocked loop) and its jobs were taken back: ``on_lost``
    abandons their attempts here, and the worker registers again.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        worker_id: str,
        concurrency: int,
        queues: tuple[str, ...] | None,
        on_lost: Callable[[], None],
    ) -> None:
        self._backend = backend
        self._params = WorkerParams(
            id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=concurrency,
            queues=queues,
        )
        self._on_lost = on_lost

    async def register(self) -> None:
        """Record the worker before it claims anything."""
        await self._backend.worker_register(self._params)

    async def beat(self) -> None:
        """Refresh the worker's row; re-register after being declared lost."""
        if await self._backend.worker_heartbeat(self._params.id):
            return
        logger.warning(
            "worker %s was declared lost; abandoning its running attempts", self._params.id
        )
        self._on_lost()
        await self.register()

    async def deregister(self) -> None:
        """Remove the worker's row after a clean stop."""
        await self._backend.worker_deregister(self._params.id)
