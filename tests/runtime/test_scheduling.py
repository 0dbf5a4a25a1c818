"""When and in what order jobs run: delays, run_at, priorities, scheduled order, and queues."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from fastapi_equeue import EQueue, JobStatus


async def test_delayed_job_starts_no_earlier_than_its_delay(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task
    async def later() -> str:
        return "ran"

    async with queue:
        job = await queue.client.enqueue("later", delay=0.5)
        assert job.status is JobStatus.QUEUED
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert abs(job.scheduled_at - (job.created_at + timedelta(seconds=0.5))) < timedelta(
        milliseconds=1
    )
    assert done.started_at is not None
    assert done.started_at >= done.created_at + timedelta(seconds=0.5)


async def test_delay_as_a_timedelta_schedules_the_job(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)

    @queue.task
    async def later() -> None:
        return None

    async with queue:
        job = await queue.client.enqueue("later", delay=timedelta(minutes=5))

    assert abs(job.scheduled_at - job.created_at - timedelta(minutes=5)) < timedelta(milliseconds=1)


async def test_run_at_in_the_past_runs_now(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue()
    run_at = datetime.now(UTC) - timedelta(hours=1)

    @queue.task
    async def overdue() -> str:
        return "ran"

    async with queue:
        job = await queue.client.enqueue("overdue", run_at=run_at)
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert abs(done.scheduled_at - run_at) < timedelta(milliseconds=1)


async def test_run_at_in_another_timezone_is_the_same_instant(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    run_at = datetime(2031, 3, 4, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    @queue.task
    async def someday() -> None:
        return None

    async with queue:
        job = await queue.client.enqueue("someday", run_at=run_at)
        stored = await queue.client.get(job.id)

    assert stored is not None
    assert stored.scheduled_at == run_at
    assert stored.scheduled_at == datetime(2031, 3, 4, 6, 30, tzinfo=UTC)


async def test_higher_priority_runs_first(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)
    order: list[str] = []

    @queue.task
    async def record(name: str) -> None:
        order.append(name)

    async with queue.connected() as client:
        jobs = [
            await client.enqueue("record", {"name": name}, priority=priority)
            for name, priority in (("low", 0), ("high", 10), ("negative", -3), ("medium", 5))
        ]
        async with queue.workers(1, None):
            done = [await client.wait(job.id, timeout=10) for job in jobs]

    assert [job.status for job in done] == [JobStatus.COMPLETED] * 4
    assert order == ["high", "medium", "low", "negative"]


async def test_task_priority_is_the_default_and_enqueue_overrides_it(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    order: list[str] = []

    @queue.task(priority=7)
    async def urgent(name: str) -> None:
        order.append(name)

    @queue.task
    async def routine(name: str) -> None:
        order.append(name)

    async with queue.connected() as client:
        jobs = [
            await client.enqueue("routine", {"name": "routine"}),
            await client.enqueue("urgent", {"name": "demoted"}, priority=-1),
            await client.enqueue("urgent", {"name": "urgent"}),
        ]
        async with queue.workers(1, None):
            for job in jobs:
                await client.wait(job.id, timeout=10)

    assert [job.priority for job in jobs] == [0, -1, 7]
    assert order == ["urgent", "routine", "demoted"]


async def test_within_a_priority_earlier_scheduled_runs_first(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    order: list[str] = []
    now = datetime.now(UTC)

    @queue.task
    async def record(name: str) -> None:
        order.append(name)

    async with queue.connected() as client:
        # Enqueued (and so created, and given ids) in an order unlike their scheduled order.
        jobs = [
            await client.enqueue("record", {"name": name}, run_at=now - timedelta(minutes=age))
            for name, age in (("one_minute_ago", 1), ("three_minutes_ago", 3), ("two", 2))
        ]
        async with queue.workers(1, None):
            for job in jobs:
                await client.wait(job.id, timeout=10)

    assert order == ["three_minutes_ago", "two", "one_minute_ago"]


async def test_worker_takes_jobs_only_from_its_queues(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=1, queues=("a",))
    # A second app on the same database working queue "b" only.
    other = make_queue(concurrency=1, queues=("b",))
    ran: list[tuple[str, str]] = []

    def register(app: EQueue, worker: str) -> None:
        @app.task(queue="a")
        async def record(label: str) -> None:
            ran.append((worker, label))

    register(queue, "queue")
    register(other, "other")

    async with queue.connected() as client:
        # The "b" job is older and more urgent: a worker that ignored queues would take it first.
        in_b = await client.enqueue("record", {"label": "b"}, queue="b", priority=10)
        in_a = await client.enqueue("record", {"label": "a"})
        async with queue.workers(1, ("a",)):
            done_a = await client.wait(in_a.id, timeout=10)
        waiting_b = await client.get(in_b.id)

        async with other:
            done_b = await other.client.wait(in_b.id, timeout=10)

    assert in_a.queue == "a"
    assert in_b.queue == "b"
    assert done_a.status is JobStatus.COMPLETED
    assert waiting_b is not None
    assert waiting_b.status is JobStatus.QUEUED
    assert waiting_b.attempts == 0
    assert waiting_b.started_at is None
    assert done_b.status is JobStatus.COMPLETED
    assert ran == [("queue", "a"), ("other", "b")]
