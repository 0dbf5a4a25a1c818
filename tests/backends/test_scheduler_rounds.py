"""The scheduler on a real store, with a clock that moves while a round writes: a tick that
passes meanwhile is enqueued by the next round, not slept over.

A round looks at the clock, enqueues what is due, then sleeps to the next tick. Were the sleep
measured from a second look at the clock, a tick passing between the two looks (a slow write,
or another process moving a shared clock) would be skipped: the next round would only find the
tick after it.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from fastapi_equeue import EQueue, events
from fastapi_equeue.backend import Backend
from fastapi_equeue.runtime.scheduler import Scheduler
from fastapi_equeue.store import Store
from fastapi_equeue.testing import ManualClock, eventually

DEADLINE = 5.0
START = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class SlowRoundClock(ManualClock):
    """A ``ManualClock`` on which the first look at or after ``at`` sees ``at``, and every look
    after it sees ``lasting`` more: the round that looked took that long."""

    def __init__(self, start: datetime, *, at: datetime, lasting: timedelta) -> None:
        super().__init__(start)
        self._slow_from = at
        self._lasting = lasting
        self._moved = False

    def now(self) -> datetime:
        seen = super().now()
        if not self._moved and seen >= self._slow_from:
            self._moved = True
            self.advance(self._lasting)
        return seen


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    await scheduler.start()
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, DEADLINE)


async def test_a_tick_that_passes_while_a_round_writes_is_enqueued_next(
    backend: Backend, database_url: str
) -> None:
    # The round that enqueues 10:01 looks at 10:01:30 and takes 40 s: 10:02 passes meanwhile.
    clock = SlowRoundClock(START, at=START + MINUTE, lasting=timedelta(seconds=40))
    declared = EQueue(database_url)  # declares the task and schedule; never started

    @declared.task
    async def beat() -> None: ...

    declared.periodic("* * * * *", "beat")
    bus = events.EventBus()
    scheduler = Scheduler(
        Store(backend, bus, clock),
        declared.registry,
        tuple(declared.schedules.values()),
        clock=clock,
    )
    ten = START.replace(second=0)

    async def dealt_with(tick: datetime) -> bool:
        return scheduler.checked.get("beat") == tick

    with bus.record(events.JobEnqueued) as enqueued:
        async with running(scheduler):
            await eventually(lambda: dealt_with(ten), timeout=DEADLINE)
            clock.advance(MINUTE)  # to 10:01:30, and on to 10:02:10 as the round writes
            await eventually(lambda: dealt_with(ten + 2 * MINUTE), timeout=DEADLINE)
        await bus.close()

    assert [e.scheduled_at for e in enqueued.events] == [ten + MINUTE, ten + 2 * MINUTE]
