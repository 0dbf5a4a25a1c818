"""Where the package reads the time and waits for it: one injectable clock, never ad-hoc calls.

Every interval of the runtime (polls, heartbeats, the rescuer, retention) waits on the queue's
clock, and every time the database stores comes from it, so a test can move time forward
instead of waiting for it (``fastapi_equeue.testing.ManualClock``). Backoffs after errors, the
completion linger and task timeouts are real time on purpose: they are about the machine, not
about the schedule.
"""

import asyncio
import contextlib
import heapq
import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """The time of the schedule: what the database stores and what the runtime waits for."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals."""

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time."""

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; whether it was set."""

    async def wait_until(self, event: asyncio.Event, deadline: float) -> bool:
        """Wait for ``event`` until ``monotonic()`` reaches ``deadline``; whether it was set.

        A deadline taken before some work began (a poll's, a tick's) keeps the schedule
        whatever time that work took, and returns at once if the clock has passed it since.
        """


@dataclass(frozen=True, slots=True)
class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; whether it was set."""
        if event.is_set():
            return True
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps the wait in a task of its
        # own, one more loop iteration between a wake-up and what it should trigger.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        return event.is_set()

    async def wait_until(self, event: asyncio.Event, deadline: float) -> bool:
        """Wait for ``event`` until ``monotonic()`` reaches ``deadline``; whether it was set."""
        return await self.wait(event, deadline - time.monotonic())


class ManualClock:
    """A clock that moves only when told to: ``advance(seconds)``.

    Everything waiting on it (``sleep``, ``wait``) wakes once the clock has been advanced past
    its deadline, in deadline order. ``now()`` starts at ``start`` (the real time by default).

    Example:
        >>> clock = ManualClock()
        >>> queue = EQueue(url, clock=clock, retention=timedelta(days=1))
        >>> clock.advance(timedelta(days=1, minutes=1))  # the pruner wakes and prunes
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be a timezone-aware datetime")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._elapsed = 0.0
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[object]]] = []

    def now(self) -> datetime:
        """The clock's current time."""
        return self._now

    def monotonic(self) -> float:
        """Seconds the clock has been advanced by in all."""
        return self._elapsed

    def advance(self, seconds: float | timedelta) -> None:
        """Move the clock forward and wake everything whose deadline has come."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if step < 0:
            raise ValueError("a clock only moves forward")
        self._now += timedelta(seconds=step)
        self._elapsed += step
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced by ``seconds`` from now."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._deadline(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for ``event`` until the clock has been advanced by ``timeout``."""
        return await self.wait_until(event, self._elapsed + timeout)

    async def wait_until(self, event: asyncio.Event, deadline: float) -> bool:
        """Wait for ``event`` until the clock reaches ``deadline`` (at once if it has)."""
        if event.is_set():
            return True
        if deadline <= self._elapsed:
            await asyncio.sleep(0)
            return event.is_set()
        waiter: asyncio.Future[object] = asyncio.ensure_future(event.wait())
        timer = self._at(deadline)
        try:
            await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        return event.is_set()

    def _deadline(self, seconds: float) -> "asyncio.Future[object]":
        return self._at(self._elapsed + seconds)

    def _at(self, deadline: float) -> "asyncio.Future[object]":
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        return future
