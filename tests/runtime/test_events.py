"""The event seam: every transition is one typed event, delivered to the subscribers of one
``EQueue`` only, in order, and no subscriber can hold up or break claiming and completing."""

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from fastapi_equeue import EQueue, JobStatus, events

DEADLINE = 10.0


def of(job_id: str) -> Callable[[events.Event], bool]:
    return lambda event: isinstance(event, events.JobEvent) and event.job_id == job_id


async def test_a_jobs_life_is_told_in_order_with_its_fields(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task(max_attempts=2, retry_delay=0)
    async def flaky(n: int) -> int:
        if n == 0:
            raise ValueError("first try")
        return n

    calls = 0

    @queue.task(name="flaky_once", max_attempts=2, retry_delay=0)
    async def flaky_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first try")
        return "ok"

    with queue.events.record(events.JobEvent) as seen:
        async with queue:
            job = await queue.client.enqueue("flaky_once", priority=3)
            await seen.wait_for(
                lambda e: isinstance(e, events.JobCompleted) and e.job_id == job.id,
                timeout=DEADLINE,
            )

    mine = [e for e in seen.events if e.job_id == job.id]
    assert [type(e) for e in mine] == [
        events.JobEnqueued,
        events.JobStarted,
        events.JobRetrying,
        events.JobStarted,
        events.JobCompleted,
    ]
    enqueued, first, retrying, second, completed = mine
    assert isinstance(enqueued, events.JobEnqueued)
    assert (enqueued.job_type, enqueued.queue, enqueued.priority) == ("flaky_once", "default", 3)
    assert [first.attempt, retrying.attempt, second.attempt, completed.attempt] == [1, 1, 2, 2]
    assert isinstance(retrying, events.JobRetrying)
    assert retrying.error == "ValueError: first try"
    assert retrying.retry_in == 0
    assert isinstance(completed, events.JobCompleted)
    assert completed.duration >= 0
    assert isinstance(first, events.JobStarted)
    assert isinstance(second, events.JobStarted)
    assert first.worker_id == second.worker_id == completed.worker_id
    assert [e.at for e in mine] == sorted(e.at for e in mine)


async def test_failures_cancellations_and_manual_retries_are_events(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    started = asyncio.Event()

    @queue.task(max_attempts=1)
    async def doomed() -> None:
        raise RuntimeError("out of luck")

    @queue.task
    async def block() -> None:
        started.set()
        await asyncio.Event().wait()

    with queue.events.record() as seen:
        async with queue:
            failed = await queue.client.enqueue("doomed")
            await queue.client.wait(failed.id, timeout=DEADLINE)
            waiting = await queue.client.enqueue("block", delay=3600)
            await queue.client.cancel(waiting.id)
            running = await queue.client.enqueue("block")
            await asyncio.wait_for(started.wait(), DEADLINE)
            await queue.client.cancel(running.id)
            await queue.client.wait(running.id, timeout=DEADLINE)
            await queue.client.retry(failed.id)

    def kinds(job_id: str) -> list[type[events.Event]]:
        return [type(e) for e in seen.events if of(job_id)(e)]

    # The retried job runs again (and fails again) before the queue stops.
    assert kinds(failed.id)[:4] == [
        events.JobEnqueued,
        events.JobStarted,
        events.JobFailed,
        events.JobRequeued,
    ]
    assert kinds(waiting.id) == [events.JobEnqueued, events.JobCancelled]
    assert kinds(running.id) == [
        events.JobEnqueued,
        events.JobStarted,
        events.JobCancelRequested,
        events.JobCancelled,
    ]
    failure = next(e for e in seen.events if isinstance(e, events.JobFailed))
    assert failure.error == "RuntimeError: out of luck"
    (requeued,) = [e for e in seen.events if isinstance(e, events.JobRequeued)]
    assert requeued.reason == "retry"
    workers = [e for e in seen.events if isinstance(e, events.WorkerEvent)]
    assert [type(e) for e in workers] == [events.WorkerStarted, events.WorkerStopped]


async def test_queue_changes_are_events(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)

    with queue.events.record(events.QueueEvent) as seen:
        async with queue:
            await queue.client.pause_queue("mail")
            await queue.client.configure_queue("mail", concurrency=3, rate="10/minute")
            await queue.client.configure_queue("mail", concurrency=None)
            await queue.client.resume_queue("mail")
            await seen.wait_count(4, timeout=DEADLINE)

    assert seen.events == [
        events.QueuePaused(at=seen.events[0].at, queue="mail"),
        events.QueueLimitsChanged(
            at=seen.events[1].at, queue="mail", concurrency=3, rate="10/minute"
        ),
        events.QueueLimitsChanged(
            at=seen.events[2].at, queue="mail", concurrency=None, rate="10/minute"
        ),
        events.QueueResumed(at=seen.events[3].at, queue="mail"),
    ]


async def test_subscribers_belong_to_their_queue(
    make_queue: Callable[..., EQueue], other_database_url: str
) -> None:
    one = make_queue()
    two = EQueue(other_database_url, poll_interval=0.05)
    for queue in (one, two):

        @queue.task
        async def ping() -> str:
            return "pong"

    with (
        one.events.record(events.JobEvent) as seen_one,
        two.events.record(events.JobEvent) as seen_two,
    ):
        async with one, two:
            job = await one.client.enqueue("ping")
            await one.client.wait(job.id, timeout=DEADLINE)

    assert {e.job_id for e in seen_one.events} == {job.id}
    assert seen_two.events == []


async def test_a_raising_subscriber_is_reported_once_and_breaks_nothing(
    make_queue: Callable[..., EQueue], caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue()

    @queue.task
    async def work(n: int) -> int:
        return n

    calls = 0

    def broken(_event: events.Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("subscriber bug")

    queue.events.subscribe(broken, events.JobCompleted)
    with queue.events.record(events.JobCompleted) as seen:
        async with queue:
            jobs = await queue.client.enqueue_many(
                [{"job_type": "work", "payload": {"n": n}} for n in range(5)]
            )
            done = [await queue.client.wait(job.id, timeout=DEADLINE) for job in jobs]
            await seen.wait_count(5, timeout=DEADLINE)

    assert [job.status for job in done] == [JobStatus.COMPLETED] * 5
    assert calls == 5
    reports = [r for r in caplog.records if "subscriber bug" in str(r.exc_info and r.exc_info[1])]
    assert len(reports) == 1
    assert reports[0].levelno == logging.ERROR


async def test_a_slow_subscriber_holds_up_no_job_and_still_gets_every_event(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task
    async def work(n: int) -> int:
        return n

    release = asyncio.Event()
    received: list[str] = []

    async def slow(event: events.JobCompleted) -> None:
        await release.wait()
        received.append(event.job_id)

    # A plain function runs in a thread: blocking it blocks no event loop.
    unblock = threading.Event()
    blocked_calls: list[str] = []

    def blocking(event: events.JobCompleted) -> None:
        unblock.wait(DEADLINE)
        blocked_calls.append(event.job_id)

    queue.events.subscribe(slow, events.JobCompleted)
    queue.events.subscribe(blocking, events.JobCompleted)
    async with queue:
        jobs = await queue.client.enqueue_many(
            [{"job_type": "work", "payload": {"n": n}} for n in range(20)]
        )
        done = [await queue.client.wait(job.id, timeout=DEADLINE) for job in jobs]
        assert received == []
        assert blocked_calls == []
        release.set()
        unblock.set()

    assert [job.status for job in done] == [JobStatus.COMPLETED] * 20
    # The queue's stop delivered what was pending, in order.
    assert sorted(received) == sorted(job.id for job in jobs)
    assert sorted(blocked_calls) == sorted(job.id for job in jobs)


async def test_events_of_a_host_transaction_wait_for_its_commit(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from fastapi_equeue.backends import normalise_url

    queue = make_queue(concurrency=0)

    @queue.task
    async def noop() -> None:
        return None

    engine = create_async_engine(normalise_url(database_url))
    try:
        with queue.events.record(events.JobEnqueued) as seen:
            async with queue:
                async with engine.connect() as conn:
                    await conn.begin()
                    rolled_back = await queue.client.enqueue("noop", session=conn)
                    await conn.rollback()
                async with engine.connect() as conn:
                    await conn.begin()
                    committed = await queue.client.enqueue("noop", session=conn)
                    assert seen.events == []
                    await conn.commit()
                await seen.wait_for(of(committed.id), timeout=DEADLINE)
    finally:
        await engine.dispose()

    assert [e.job_id for e in seen.events] == [committed.id]
    assert rolled_back.id not in {e.job_id for e in seen.events}


async def test_waiting_for_an_event_that_never_comes_times_out(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)

    with queue.events.record(events.JobCompleted) as seen:
        async with queue:
            with pytest.raises(TimeoutError):
                await seen.wait_for(timeout=0.2)


async def test_a_subscriber_far_behind_loses_the_oldest_and_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = events.EventBus(max_backlog=3)
    entered, release = asyncio.Event(), asyncio.Event()
    got: list[int] = []

    async def behind(event: events.WorkerStopped) -> None:
        entered.set()
        await release.wait()
        got.append(int(event.worker_id))

    bus.subscribe(behind, events.WorkerStopped)
    at = datetime.now(UTC)
    bus.emit(events.WorkerStopped(at=at, worker_id="0"))
    await asyncio.wait_for(entered.wait(), DEADLINE)  # the first is taken; the rest queue up
    for n in range(1, 8):
        bus.emit(events.WorkerStopped(at=at, worker_id=str(n)))
    release.set()
    await bus.close()

    assert got == [0, 5, 6, 7]
    warnings = [r for r in caplog.records if "events behind" in r.getMessage()]
    assert len(warnings) == 1


async def test_nothing_is_built_for_events_nobody_asked_for() -> None:
    bus = events.EventBus()
    assert not bus.wants(events.JobCompleted)

    subscription = bus.subscribe(lambda _e: None, events.AttemptEnded)
    assert bus.wants(events.JobCompleted)
    assert not bus.wants(events.JobEnqueued)

    subscription.cancel()
    assert not bus.wants(events.JobCompleted)
