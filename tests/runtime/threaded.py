"""Workers on an event loop of their own, in a thread: they rescue what stalls while the test's
own loop is blocked or its connections are starved."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi_equeue import EQueue

DEADLINE = 30.0


@asynccontextmanager
async def workers_in_a_thread(make: Callable[[], EQueue]) -> AsyncIterator[EQueue]:
    """Run ``make()``'s queue, with its workers, on its own loop in a thread, while the block
    runs; it is started (its worker registered) when the block begins."""
    started, stop = threading.Event(), threading.Event()
    queue = make()

    async def serve() -> None:
        async with queue:
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert await asyncio.to_thread(started.wait, DEADLINE), "the threaded workers did not start"
    try:
        yield queue
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, DEADLINE)
