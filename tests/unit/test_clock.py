"""The injectable clocks: the real one, and ``ManualClock``, which moves only when told to."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from fastapi_equeue.clock import SystemClock
from fastapi_equeue.testing import ManualClock

START = datetime(2030, 1, 1, tzinfo=UTC)


async def test_sleepers_wake_in_deadline_order_once_the_clock_passes_them() -> None:
    clock = ManualClock(START)
    woken: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append(name)

    tasks = [asyncio.create_task(sleeper(name, s)) for name, s in (("b", 20), ("a", 10), ("c", 30))]
    await asyncio.sleep(0)
    clock.advance(25)
    await asyncio.wait_for(asyncio.gather(*tasks[:2]), 5)

    assert woken == ["a", "b"]
    assert not tasks[2].done()
    assert clock.now() == START + timedelta(seconds=25)
    assert clock.monotonic() == 25
    clock.advance(timedelta(seconds=5))
    await asyncio.wait_for(tasks[2], 5)
    assert woken == ["a", "b", "c"]


async def test_wait_returns_when_the_event_is_set_or_the_clock_reaches_the_deadline() -> None:
    clock = ManualClock(START)
    event = asyncio.Event()

    waiting = asyncio.create_task(clock.wait(event, 60))
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(waiting, 5) is True

    event.clear()
    waiting = asyncio.create_task(clock.wait(event, 60))
    await asyncio.sleep(0)
    clock.advance(60)
    assert await asyncio.wait_for(waiting, 5) is False


async def test_a_deadline_already_passed_returns_at_once() -> None:
    clock = ManualClock(START)
    clock.advance(100)

    assert await asyncio.wait_for(clock.wait_until(asyncio.Event(), 50), 5) is False


def test_a_manual_clock_only_moves_forward_and_needs_an_aware_start() -> None:
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2030, 1, 1))


async def test_the_system_clock_waits_for_real() -> None:
    clock = SystemClock()
    event = asyncio.Event()

    assert await clock.wait(event, 0.01) is False
    event.set()
    assert await clock.wait_until(event, clock.monotonic() - 1) is True
    assert clock.now().tzinfo is UTC
