"""What operators read beyond jobs, through the client: capped counts, completions per minute,
the worker processes, and the change feed that tells the dashboard to refresh."""

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest

from fastapi_equeue import EQueue, InvalidOption, JobStatus
from fastapi_equeue.live import ChangeFeed

DEADLINE = 10.0


async def test_count_matches_the_filters_up_to_the_cap(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)

    @queue.task
    async def noop() -> None: ...

    async with queue:
        client = queue.client
        await client.enqueue_many([{"job_type": "noop", "queue": "a"} for _ in range(4)])
        await client.enqueue_many([{"job_type": "noop", "queue": "b"} for _ in range(3)])

        assert await client.count() == 7
        assert await client.count(queue="a") == 4
        assert await client.count(status="queued", queue="b") == 3
        assert await client.count(status=JobStatus.FAILED) == 0
        assert await client.count(cap=5) == 5
        for bad in ({"cap": 0}, {"cap": 10_001}, {"status": "lost"}, {"queue": ""}):
            with pytest.raises(InvalidOption):
                await client.count(**bad)  # type: ignore[arg-type]


async def test_throughput_has_a_point_per_minute_with_each_outcome(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=4)

    @queue.task
    async def ok() -> None: ...

    @queue.task(max_attempts=1)
    async def broken() -> None:
        raise RuntimeError("no")

    async with queue:
        client = queue.client
        jobs = [await client.enqueue("ok") for _ in range(3)]
        jobs += [await client.enqueue("broken") for _ in range(2)]
        for job in jobs:
            await client.wait(job.id, timeout=DEADLINE)
        points = await client.throughput(5)

        with pytest.raises(InvalidOption):
            await client.throughput(0)

    assert len(points) == 5
    minutes = [p.minute for p in points]
    assert all((b - a).total_seconds() == 60 for a, b in itertools.pairwise(minutes))
    assert sum(p.completed for p in points) == 3
    assert sum(p.failed for p in points) == 2


async def test_the_workers_of_a_running_queue_are_listed_alive(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=3)

    async with queue:
        (worker,) = await queue.client.workers()

    assert worker.alive
    assert worker.concurrency == 3
    assert worker.running == 0
    assert worker.queues is None


def reader_and_writer(make_queue: Callable[..., EQueue]) -> tuple[EQueue, EQueue]:
    """Two queues on one database, standing for two processes: on SQLite nothing announces
    the writer's jobs to the reader but the change marker."""
    reader, writer = make_queue(concurrency=0), make_queue(concurrency=0)
    for queue in (reader, writer):
        queue.task(name="noop")(lambda: None)
    return reader, writer


async def moved_beyond(feed: ChangeFeed, seen: int) -> int:
    """The feed's version once it moved beyond ``seen``; ``TimeoutError`` if it does not
    within the deadline."""
    async with asyncio.timeout(DEADLINE):
        while (now := await feed.wait(seen, DEADLINE)) == seen:
            pass
    return now


async def test_the_change_feed_moves_for_another_queues_writes_and_debounces_a_burst(
    make_queue: Callable[..., EQueue],
) -> None:
    reader, writer = reader_and_writer(make_queue)

    async with reader, writer:
        feed = reader.changes
        async with feed.reading():
            seen = feed.version
            await writer.client.enqueue("noop")
            await moved_beyond(feed, seen)

            # A burst: one signal per half second at most, however many writes.
            seen = feed.version
            started = time.monotonic()
            for _ in range(100):
                await writer.client.enqueue("noop")
            elapsed = time.monotonic() - started
            await moved_beyond(feed, seen)
            assert 1 <= feed.version - seen <= elapsed / 0.5 + 2


async def test_the_change_feed_closes_with_its_queue(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)

    async with queue:
        feed = queue.changes
        async with feed.reading():
            seen = feed.version
            waiting = asyncio.create_task(feed.wait(seen, 60))
            await asyncio.sleep(0)
    # The queue stopped: the reader was woken, and the feed says it is closed.
    async with asyncio.timeout(DEADLINE):
        assert await waiting > seen
    assert feed.closed


async def test_a_reader_that_comes_back_finds_what_changed_while_it_was_away(
    make_queue: Callable[..., EQueue],
) -> None:
    # A dashboard's stream closes every few seconds and reopens; a change in between must not
    # be lost (the feed goes on watching for a while after its last reader left).
    reader, writer = reader_and_writer(make_queue)

    async with reader, writer:
        feed = reader.changes
        async with feed.reading():
            seen = feed.version
        await writer.client.enqueue("noop")
        async with feed.reading():
            await moved_beyond(feed, seen)


async def test_backlog_lists_what_could_run_per_queue_and_the_live_workers(
    make_queue: Callable[..., EQueue],
) -> None:
    # One worker process, on a queue that stays empty: the jobs below wait.
    queue = make_queue(concurrency=1, queues=["elsewhere"])

    @queue.task
    async def noop() -> None: ...

    async with queue:
        client = queue.client
        await client.pause_queue("reports")
        waited_since = time.monotonic()
        await client.enqueue("noop", queue="emails")
        await client.enqueue("noop", queue="emails", delay=3600)
        backlog = await client.backlog()
        waited_for = time.monotonic() - waited_since

    by_name = {line.queue: line for line in backlog.queues}
    assert set(by_name) == {"emails", "reports"}
    emails, reports = by_name["emails"], by_name["reports"]
    assert (emails.paused, emails.backlog) == (False, 2)
    # Only the due job has an age; the delayed one counts as backlog but has not waited yet.
    assert emails.oldest_age is not None
    assert 0 < emails.oldest_age <= waited_for
    assert (reports.paused, reports.backlog, reports.oldest_age) == (True, 0, None)
    assert backlog.workers == 1
