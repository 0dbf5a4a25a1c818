"""Helpers for testing an app that uses fastapi_equeue: run queued jobs to their end, move time
forward, wait for conditions; no sleeps.

Example:
    >>> async with queue.lifespan(app):
    ...     response = await http.post("/signup", json={...})
    ...     await drain(queue)
    ...     job = await queue.client.get(response.json()["job_id"])
    ...     assert job.status == "completed"
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi_equeue.clock import ManualClock
from fastapi_equeue.config import DEFAULT_CONCURRENCY
from fastapi_equeue.queue import EQueue

__all__ = ["ManualClock", "drain", "eventually"]

T = TypeVar("T")


async def drain(queue: EQueue, *, timeout: float = 60.0) -> None:
    """Run jobs until none is due and none is running, then return.

    Jobs scheduled for later (a ``delay``, a retry with a backoff) are left waiting: give tasks
    ``retry_delay=0`` in tests to have ``drain`` run every attempt. The queue must be started;
    its own workers, if it has any, keep running alongside.

    Raises:
        TimeoutError: jobs were still running or due after ``timeout`` seconds.
    """
    async with asyncio.timeout(timeout):
        while True:
            runtime = queue.new_runtime(
                concurrency=queue.config.concurrency or DEFAULT_CONCURRENCY,
                queues=queue.config.queues,
                burst=True,
            )
            await runtime.start()
            try:
                await runtime.wait()
            finally:
                await runtime.stop()
            own = queue.runtime
            if own is not None:
                await own.idle()
            if runtime.claimed_total == 0 and (own is None or not own.attempts.busy):
                return


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Await ``probe()`` until it returns something other than ``None``/``False``; return it.

    Raises:
        TimeoutError: ``timeout`` seconds passed first.
    """
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if value is not None and value is not False:
                return value
            await asyncio.sleep(interval)
