"""Periodic jobs in running queues, on both backends: one job per tick as a ``ManualClock``
moves, none made up for after downtime but the latest, one per tick from two queues racing
on one database, schedules listed in Python and over REST, and one tick in real time.

Every wait is on a condition with a deadline: an event, or a scheduler's record of the tick
it has dealt with (``Scheduler.checked``).
"""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

import fastapi_equeue as equeue
from fastapi_equeue import ConfigurationError, EQueue, JobStatus, events
from fastapi_equeue.clock import SystemClock
from fastapi_equeue.runtime.scheduler import Scheduler
from fastapi_equeue.testing import ManualClock, eventually

DEADLINE = 10.0
START = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC)
"""30 seconds past a minute: the first tick of "* * * * *" to come is 10:01."""
MINUTE = timedelta(minutes=1)
# Nothing in these tests is about rescue: a worker is never declared lost when a clock jumps.
CALM = {"stalled_after": 86_400.0, "concurrency": 1}


def tick(n: int) -> datetime:
    """The n-th tick of "* * * * *" after START (0: the one before it)."""
    return START.replace(second=0) + n * MINUTE


def with_beat(queue: EQueue, cron: str = "* * * * *", timezone: str = "UTC") -> EQueue:
    @queue.task
    async def beat() -> str:
        return "beat"

    queue.periodic(cron, "beat", timezone=timezone)
    return queue


def scheduler_of(queue: EQueue) -> Scheduler:
    assert queue.runtime is not None
    assert queue.runtime.scheduler is not None
    return queue.runtime.scheduler


async def reached(scheduler: Scheduler, when: datetime, name: str = "beat") -> None:
    """Wait until ``scheduler`` has dealt with the tick ``when`` (enqueued it, or found it
    enqueued)."""

    async def probe() -> bool:
        return scheduler.checked.get(name) == when

    await eventually(probe, timeout=DEADLINE)


async def scheduled_ticks(queue: EQueue, job_type: str = "beat") -> list[datetime]:
    page = await queue.client.list(job_type=job_type, limit=500)
    return sorted(job.scheduled_at for job in page.items)


async def test_one_job_per_tick_as_the_clock_moves(make_queue: Callable[..., EQueue]) -> None:
    clock = ManualClock(START)
    queue = with_beat(make_queue(clock=clock, **CALM))

    with queue.events.record(events.JobEnqueued) as enqueued:
        async with queue:
            scheduler = scheduler_of(queue)
            # Registered: a new schedule starts after its latest tick, and waits for the next.
            await reached(scheduler, tick(0))
            assert await scheduled_ticks(queue) == []

            for n in range(1, 6):
                clock.advance(MINUTE)
                await enqueued.wait_count(n, timeout=DEADLINE)
                await reached(scheduler, tick(n))
                assert await scheduled_ticks(queue) == [tick(k) for k in range(1, n + 1)]

    assert [e.scheduled_at for e in enqueued.events] == [tick(n) for n in range(1, 6)]


async def test_the_jobs_are_ordinary_jobs_of_their_tasks_queue(
    make_queue: Callable[..., EQueue],
) -> None:
    clock = ManualClock(START)
    queue = make_queue(clock=clock, **CALM)

    @queue.task(queue="reports", priority=5, max_attempts=2)
    async def report(kind: str) -> str:
        return f"{kind} report"

    queue.periodic("*/5 * * * *", "report", {"kind": "hourly"}, name="five-minutely")

    with queue.events.record(events.JobCompleted) as completed:
        async with queue:
            await reached(scheduler_of(queue), tick(0), "five-minutely")
            clock.advance(5 * MINUTE)
            done = await completed.wait_for(timeout=DEADLINE)
            stored = await queue.client.get(done.job_id)

    assert stored is not None
    assert (stored.queue, stored.priority, stored.max_attempts) == ("reports", 5, 2)
    assert stored.payload == {"kind": "hourly"}
    assert stored.result == "hourly report"
    assert stored.scheduled_at == tick(5)


async def test_after_downtime_only_the_latest_missed_tick_runs(
    make_queue: Callable[..., EQueue],
) -> None:
    clock = ManualClock(START)
    queue = with_beat(make_queue(clock=clock, **CALM))
    async with queue:
        await reached(scheduler_of(queue), tick(0))
        clock.advance(MINUTE)
        await reached(scheduler_of(queue), tick(1))

    # Ten ticks pass with no worker running; then one starts again.
    clock.advance(10 * MINUTE)
    with queue.events.record(events.JobEnqueued) as enqueued:
        async with queue:
            await reached(scheduler_of(queue), tick(11))
            assert await scheduled_ticks(queue) == [tick(1), tick(11)]

    assert [e.scheduled_at for e in enqueued.events] == [tick(11)]


async def test_a_clock_that_jumps_ten_ticks_enqueues_the_latest_once(
    make_queue: Callable[..., EQueue],
) -> None:
    clock = ManualClock(START)
    queue = with_beat(make_queue(clock=clock, **CALM))

    async with queue:
        scheduler = scheduler_of(queue)
        await reached(scheduler, tick(0))
        # A suspended machine: the clock has moved on by ten ticks at once.
        clock.advance(10 * MINUTE)
        await reached(scheduler, tick(10))
        assert await scheduled_ticks(queue) == [tick(10)]

        clock.advance(MINUTE)
        await reached(scheduler, tick(11))
        assert await scheduled_ticks(queue) == [tick(10), tick(11)]


async def test_two_queues_on_one_database_enqueue_one_job_per_tick(
    make_queue: Callable[..., EQueue],
) -> None:
    clocks = [ManualClock(START), ManualClock(START)]
    queues = [with_beat(make_queue(clock=clock, **CALM)) for clock in clocks]
    won = [0, 0]

    def counter(index: int) -> Callable[[events.JobEnqueued], None]:
        def count(event: events.JobEnqueued) -> None:
            won[index] += 1

        return count

    for index, queue in enumerate(queues):
        queue.events.subscribe(counter(index), events.JobEnqueued)
    async with queues[0], queues[1]:
        schedulers = [scheduler_of(queue) for queue in queues]
        for scheduler in schedulers:
            await reached(scheduler, tick(0))
        for n in range(1, 25):
            # In step, first one then the other first: each wakes for the tick and races.
            for clock in clocks if n % 2 else reversed(clocks):
                clock.advance(MINUTE)
            for scheduler in schedulers:
                await reached(scheduler, tick(n))

        assert await scheduled_ticks(queues[0]) == [tick(n) for n in range(1, 25)]
        listed = await queues[1].client.schedules()

    assert sum(won) == 24, won
    # Both raced for the ticks, and each won some: the table, not the order, decided.
    assert min(won) > 0, won
    assert listed[0].last_run_at == tick(24)


async def test_schedules_are_listed_with_next_run_and_last_job(
    make_queue: Callable[..., EQueue],
) -> None:
    clock = ManualClock(START)
    queue = with_beat(make_queue(clock=clock, **CALM), "*/2 * * * *", "Europe/Berlin")

    @queue.task
    async def audit(scope: str) -> None:
        return None

    queue.periodic("0 3 * * *", "audit", {"scope": "all"}, name="audit-nightly")
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)

    with queue.events.record(events.JobEnqueued) as enqueued:
        async with queue.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                await reached(scheduler_of(queue), tick(0))
                before = await queue.client.schedules()

                clock.advance(2 * MINUTE)
                job = await enqueued.wait_for(timeout=DEADLINE)
                await reached(scheduler_of(queue), tick(2))
                after = await queue.client.schedules()
                response = await http.get("/jobs/schedules")

    assert [s.name for s in before] == ["audit-nightly", "beat"]
    audit_info, beat_info = before
    assert (audit_info.cron, audit_info.timezone, audit_info.job_type) == (
        "0 3 * * *",
        "UTC",
        "audit",
    )
    assert audit_info.next_run_at == datetime(2026, 5, 5, 3, 0, tzinfo=UTC)
    assert (beat_info.cron, beat_info.timezone) == ("*/2 * * * *", "Europe/Berlin")
    assert beat_info.next_run_at == tick(2)
    assert (beat_info.last_run_at, beat_info.last_job_id) == (None, None)

    beat_after = after[1]
    assert beat_after.next_run_at == tick(4)
    assert beat_after.last_run_at == tick(2)
    assert beat_after.last_job_id == job.job_id

    assert response.status_code == 200
    assert response.json() == [info.model_dump(mode="json") for info in after]
    assert response.json()[1]["last_job_id"] == job.job_id


async def test_an_enqueue_only_app_runs_no_scheduler(make_queue: Callable[..., EQueue]) -> None:
    app_clock, worker_clock = ManualClock(START), ManualClock(START)
    app = make_queue(clock=app_clock, concurrency=0)

    @app.task
    async def from_app() -> None:
        return None

    app.periodic("* * * * *", "from_app")
    worker = with_beat(make_queue(clock=worker_clock, **CALM))

    async with app, worker:
        assert app.runtime is None
        scheduler = scheduler_of(worker)
        await reached(scheduler, tick(0))
        for n in range(1, 4):
            app_clock.advance(MINUTE)
            worker_clock.advance(MINUTE)
            await reached(scheduler, tick(n))

        # The worker, woken alike, enqueued each of its ticks; the app none of its own.
        assert await scheduled_ticks(worker) == [tick(1), tick(2), tick(3)]
        assert await scheduled_ticks(app, "from_app") == []
        (listed,) = await app.client.schedules()
        assert (listed.name, listed.last_run_at, listed.next_run_at) == ("from_app", None, tick(4))


async def test_a_changed_cron_starts_from_its_next_tick(make_queue: Callable[..., EQueue]) -> None:
    clock = ManualClock(START)
    hourly = with_beat(make_queue(clock=clock, **CALM), "0 * * * *")
    async with hourly:
        await reached(scheduler_of(hourly), START.replace(minute=0, second=0))

    # Redeployed as every minute: its 10:00 tick (and every minute since) is not made up for.
    every_minute = with_beat(make_queue(clock=clock, **CALM))
    async with every_minute:
        scheduler = scheduler_of(every_minute)
        await reached(scheduler, tick(0))
        assert await scheduled_ticks(every_minute) == []
        clock.advance(MINUTE)
        await reached(scheduler, tick(1))
        assert await scheduled_ticks(every_minute) == [tick(1)]


async def test_during_a_rolling_deploy_only_the_last_registered_cron_enqueues(
    make_queue: Callable[..., EQueue],
) -> None:
    old_clock, new_clock = ManualClock(START), ManualClock(START)
    old = with_beat(make_queue(clock=old_clock, **CALM))
    new = with_beat(make_queue(clock=new_clock, **CALM), "*/2 * * * *")

    async with old:
        await reached(scheduler_of(old), tick(0))
        async with new:
            await reached(scheduler_of(new), tick(0))
            for n in range(1, 5):
                old_clock.advance(MINUTE)
                new_clock.advance(MINUTE)
                await reached(scheduler_of(old), tick(n))
                if n % 2 == 0:
                    await reached(scheduler_of(new), tick(n))

            assert await scheduled_ticks(new) == [tick(2), tick(4)]


async def test_periodic_is_declared_before_the_queue_starts(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)

    @queue.task
    async def late() -> None:
        return None

    async with queue:
        with pytest.raises(ConfigurationError, match="before the queue starts"):
            queue.periodic("* * * * *", "late")
    assert queue.schedules == {}


class ShiftedClock:
    """The real clock, read ``shift`` later: every wait is real time, and the next minute can
    be made two seconds away."""

    def __init__(self) -> None:
        self.shift = timedelta()
        self._real = SystemClock()

    def now(self) -> datetime:
        return self._real.now() + self.shift

    def monotonic(self) -> float:
        return self._real.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        return await self._real.wait(event, timeout)

    async def wait_until(self, event: asyncio.Event, deadline: float) -> bool:
        return await self._real.wait_until(event, deadline)


async def test_a_tick_in_real_time_enqueues_and_runs_its_job(
    make_queue: Callable[..., EQueue],
) -> None:
    clock = ShiftedClock()
    queue = with_beat(make_queue(clock=clock, **CALM))

    with queue.events.record(events.JobEnqueued, events.JobCompleted) as seen:
        async with queue.connected():
            # Connected and migrated: the scheduler starts at once, three seconds before a tick.
            real = clock.now()
            boundary = real.replace(second=0, microsecond=0) + MINUTE
            clock.shift = boundary - timedelta(seconds=3) - real
            async with queue.workers(1, None):
                enqueued = await seen.wait_for(
                    lambda e: isinstance(e, events.JobEnqueued), timeout=DEADLINE
                )
                await seen.wait_for(lambda e: isinstance(e, events.JobCompleted), timeout=DEADLINE)
                job = await queue.client.get(enqueued.job_id)

    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.scheduled_at == boundary
    # Enqueued once the clock reached the tick, not before.
    assert enqueued.at >= boundary
    assert job.started_at is not None
    assert job.started_at >= boundary
