"""The dashboard's live stream: a hello, then ``changed`` when jobs change, pings while
nothing does, and an end when its lifetime is up or the queue stops."""

import asyncio
from collections.abc import Callable

import pytest

from fastapi_equeue import EQueue
from fastapi_equeue.dashboard import stream

DEADLINE = 10.0


async def next_event(events: object) -> str:
    async with asyncio.timeout(DEADLINE):
        return await anext(events)  # type: ignore[call-overload,no-any-return]


async def test_a_change_is_streamed_as_an_event(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)
    queue.task(name="noop")(lambda: None)

    async with queue:
        events = stream._events(queue.changes)
        hello = await next_event(events)
        await queue.client.enqueue("noop")
        while (event := await next_event(events)).startswith(":"):
            pass  # pings
        await events.aclose()

    assert hello.startswith("retry: ")
    assert "event: hello" in hello
    assert event.startswith('event: changed\ndata: {"version": ')


async def test_a_stream_ends_when_its_lifetime_is_up_and_when_the_queue_stops(
    make_queue: Callable[..., EQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "STREAM_LIFETIME", 0.3)
    queue = make_queue(concurrency=0)

    async with queue:
        async with asyncio.timeout(DEADLINE):
            short = [event async for event in stream._events(queue.changes)]
        monkeypatch.setattr(stream, "STREAM_LIFETIME", 600)
        endless = stream._events(queue.changes)
        await next_event(endless)
        reading = asyncio.create_task(anext(endless))
        await asyncio.sleep(0)
    # The queue stopped: the open stream ends instead of holding the server's shutdown.
    async with asyncio.timeout(DEADLINE):
        with pytest.raises(StopAsyncIteration):
            await reading
    assert "event: hello" in short[0]
