"""Injected time, end to end, on both backends: delays, retry delays, ``stalled_after`` and
retention are crossed by moving a ``ManualClock``, never by waiting for real seconds.

The clock is also where the database's stored times come from (PostgreSQL included), so a job
delayed by an hour is due once the clock says an hour has passed.
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta

from fastapi_equeue import EQueue, JobStatus, events
from fastapi_equeue.testing import ManualClock

DEADLINE = 10.0
ClaimForDeadWorker = Callable[[EQueue, str], Awaitable[str]]


def completed(job_id: str) -> Callable[[events.JobCompleted], bool]:
    return lambda event: event.job_id == job_id


async def test_a_delayed_job_runs_once_the_clock_reaches_it(
    make_queue: Callable[..., EQueue],
) -> None:
    clock = ManualClock()
    queue = make_queue(clock=clock)

    @queue.task
    async def ping() -> str:
        return "pong"

    with queue.events.record(events.JobCompleted) as done:
        async with queue:
            later = await queue.client.enqueue("ping", delay=timedelta(hours=1))
            now = await queue.client.enqueue("ping")
            await done.wait_for(completed(now.id), timeout=DEADLINE)
            # The worker has claimed since: the delayed job was not due.
            assert (await queue.client.get(later.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]

            clock.advance(timedelta(hours=1, seconds=1))
            await done.wait_for(completed(later.id), timeout=DEADLINE)

    assert later.scheduled_at - later.created_at == timedelta(hours=1)


async def test_a_retry_waits_for_its_delay_on_the_clock(make_queue: Callable[..., EQueue]) -> None:
    clock = ManualClock()
    queue = make_queue(clock=clock)
    calls = 0

    @queue.task(max_attempts=2, retry_delay=600)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("not yet")
        return "ok"

    with queue.events.record(events.JobRetrying, events.JobCompleted) as seen:
        async with queue:
            job = await queue.client.enqueue("flaky")
            retrying = await seen.wait_for(timeout=DEADLINE)
            assert isinstance(retrying, events.JobRetrying)
            row = await queue.client.get(job.id)
            assert row is not None
            assert row.status is JobStatus.RETRYING
            assert row.scheduled_at == clock.now() + timedelta(seconds=600)

            clock.advance(601)
            await seen.wait_for(lambda e: isinstance(e, events.JobCompleted), timeout=DEADLINE)

    assert calls == 2


async def test_a_silent_workers_job_is_rescued_once_stalled_after_passes(
    make_queue: Callable[..., EQueue], claim_for_dead_worker: ClaimForDeadWorker
) -> None:
    clock = ManualClock()
    queue = make_queue(clock=clock, stalled_after=30.0, heartbeat_interval=5.0)

    @queue.task
    async def resilient() -> str:
        return "ok"

    with queue.events.record(events.JobRescued, events.JobCompleted) as seen:
        async with queue.connected() as client:
            job = await client.enqueue("resilient")
            await claim_for_dead_worker(queue, job.id)
            async with queue.workers(2, None):
                # Past stalled_after since the dead worker's last beat: the rescuer's next round
                # (due an interval after its first, which found nothing) takes the job back.
                clock.advance(31)
                rescued = await seen.wait_for(timeout=DEADLINE)
                await seen.wait_for(lambda e: isinstance(e, events.JobCompleted), timeout=DEADLINE)

    assert isinstance(rescued, events.JobRescued)
    assert (rescued.job_id, rescued.status) == (job.id, JobStatus.QUEUED)
    done = [e for e in seen.events if isinstance(e, events.JobCompleted)]
    assert [(e.job_id, e.attempt) for e in done] == [(job.id, 2)]


async def test_finished_jobs_are_pruned_once_their_retention_passes(
    make_queue: Callable[..., EQueue],
) -> None:
    clock = ManualClock()
    queue = make_queue(clock=clock, retention=timedelta(hours=1), failed_retention=None)

    @queue.task(max_attempts=1)
    async def settle(fail: bool) -> str:
        if fail:
            raise RuntimeError("kept for inspection")
        return "done"

    with queue.events.record(events.JobsPruned) as pruned:
        async with queue:
            ok = await queue.client.enqueue("settle", {"fail": False}, idempotency_key="k-1")
            bad = await queue.client.enqueue("settle", {"fail": True})
            await queue.client.wait(ok.id, timeout=DEADLINE)
            await queue.client.wait(bad.id, timeout=DEADLINE)

            clock.advance(timedelta(hours=1, minutes=2))
            event = await pruned.wait_for(timeout=DEADLINE)

            assert await queue.client.get(ok.id) is None
            assert (await queue.client.get(bad.id)).status is JobStatus.FAILED  # type: ignore[union-attr]
            # The key is free again: the same key makes a new job.
            again = await queue.client.enqueue("settle", {"fail": False}, idempotency_key="k-1")
            assert again.id != ok.id

    assert event.counts == {JobStatus.COMPLETED: 1}
