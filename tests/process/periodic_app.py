"""The app of the periodic process tests: ``python -m fastapi_equeue.worker periodic_app:queue``
with this folder and the repository root on ``PYTHONPATH``.

Its queue's clock is a file that the test moves (``EQUEUE_CLOCK_FILE``: the time as epoch
seconds, replaced whole): every process reads the same time, and a minute passes when the test
says so. The queue has one task, ``tick`` (which records its runs in ``EQUEUE_LEDGER``), run
once per minute by the schedule ``every-minute``. The scheduler logs at DEBUG, so each
process's log shows every tick it dealt with: the ones it enqueued, and those it found
enqueued by the other.

``queue`` is built on first access (see ``tests.apps``): importing the module needs no
environment.
"""

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from fastapi_equeue import EQueue
from tests import apps
from tests.apps import record

SCHEDULE = "every-minute"
POLL = 0.01
"""Real seconds between looks at the clock file while something waits on the clock."""


class FileClock:
    """The time in a file, shared by every process that reads it; waits poll the file."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.monotonic(), UTC)

    def monotonic(self) -> float:
        # The test only moves the time forward.
        return float(self._path.read_text())

    async def sleep(self, seconds: float) -> None:
        await self.wait_until(asyncio.Event(), self.monotonic() + seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        return await self.wait_until(event, self.monotonic() + timeout)

    async def wait_until(self, event: asyncio.Event, deadline: float) -> bool:
        while not event.is_set() and self.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await event.wait()
        return event.is_set()


def build_queue(database_url: str, clock_file: Path) -> EQueue:
    """The queue, its task and its schedule, on the clock of ``clock_file``."""
    queue = EQueue(
        database_url,
        clock=FileClock(clock_file),
        concurrency=2,
        # On a clock that moves by minutes, no worker is ever declared lost.
        stalled_after=86_400.0,
        shutdown_grace=1.0,
    )

    @queue.task
    async def tick() -> int:
        return record("tick")

    queue.periodic("* * * * *", "tick", name=SCHEDULE)
    return queue


def queue_from_env() -> EQueue:
    logging.getLogger("fastapi_equeue.runtime.scheduler").setLevel(logging.DEBUG)
    return build_queue(apps.database_url("periodic_app"), Path(os.environ["EQUEUE_CLOCK_FILE"]))


__getattr__ = apps.built_on_first_access(globals(), queue=queue_from_env)
