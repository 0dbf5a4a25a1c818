"""Progress of long jobs: reports from sync and async tasks reach ``Job.progress``, writes are
throttled (the first and the last of an attempt always land), fenced by attempt, announced as
``JobProgress``, and a failed write never fails the attempt."""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from fastapi_equeue import EQueue, JobContext, JobStatus, events
from fastapi_equeue.backend import JobProgressParams
from fastapi_equeue.store import Store


@pytest.mark.parametrize("sync_task", [False, True], ids=["async_task", "sync_task"])
async def test_the_last_report_shows_in_the_job(
    make_queue: Callable[..., EQueue], sync_task: bool
) -> None:
    queue = make_queue()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def sync_steps(steps: int, ctx: JobContext) -> int:
        threads.append(threading.get_ident())
        for step in range(1, steps + 1):
            ctx.progress(step / steps, f"step {step} of {steps}")
        return steps

    async def async_steps(steps: int, ctx: JobContext) -> int:
        for step in range(1, steps + 1):
            await ctx.progress(step / steps, f"step {step} of {steps}")
        return steps

    queue.task(name="steps")(sync_steps if sync_task else async_steps)
    before = datetime.now(UTC)

    async with queue:
        job = await queue.client.enqueue("steps", {"steps": 4})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED, done.last_error
    assert done.progress is not None
    assert done.progress.fraction == 1.0
    assert done.progress.message == "step 4 of 4"
    assert before <= done.progress.at <= datetime.now(UTC)
    if sync_task:
        (thread,) = threads
        assert thread != loop_thread


async def test_a_job_that_reports_nothing_has_no_progress(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task
    async def quiet(ctx: JobContext) -> None:
        return None

    async with queue:
        job = await queue.client.enqueue("quiet")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert done.progress is None


@pytest.mark.parametrize(
    ("sync_task", "pause"),
    [(False, 0.0), (True, 0.0), (False, 0.005), (True, 0.005)],
    ids=["async_task", "sync_task", "async_task_paced", "sync_task_paced"],
)
async def test_a_burst_of_reports_writes_the_first_and_the_last(
    make_queue: Callable[..., EQueue], sync_task: bool, pause: float
) -> None:
    # Paced, the 50 reports take a quarter of a second or more: time for a dozen writes
    # without the throttle.
    queue = make_queue()

    def sync_burst(ctx: JobContext) -> None:
        for i in range(1, 51):
            ctx.progress(i / 50, f"report {i}")
            time.sleep(pause)

    async def async_burst(ctx: JobContext) -> None:
        for i in range(1, 51):
            await ctx.progress(i / 50, f"report {i}")
            await asyncio.sleep(pause)

    queue.task(name="burst")(sync_burst if sync_task else async_burst)

    async with queue:
        with queue.events.record(events.JobProgress, events.JobCompleted) as seen:
            job = await queue.client.enqueue("burst")
            await seen.wait_for(
                lambda e: isinstance(e, events.JobCompleted) and e.job_id == job.id, timeout=10
            )

    written = [e for e in seen.events if isinstance(e, events.JobProgress)]
    messages = [e.message for e in written]
    assert messages[0] == "report 1"
    assert messages[-1] == "report 50"
    # One a second at most: the burst takes less than a second; a loaded machine might see a
    # third write between the two.
    assert len(written) <= 3, messages
    assert isinstance(seen.events[-1], events.JobCompleted)  # the last report lands first
    assert all(e.job_id == job.id and e.attempt == 1 for e in written)
    assert (written[0].fraction, written[-1].fraction) == (0.02, 1.0)


async def test_a_report_within_the_second_is_written_when_the_second_is_over(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    release = asyncio.Event()

    @queue.task
    async def waits(ctx: JobContext) -> None:
        await ctx.progress(0.1, "first")
        await ctx.progress(0.2, "second")  # within the second: deferred
        await release.wait()  # the attempt goes on: only the throttle's timer can write it

    loop = asyncio.get_running_loop()
    async with queue:
        with queue.events.record(events.JobProgress) as seen:
            job = await queue.client.enqueue("waits")
            first = await seen.wait_for(lambda e: e.message == "first", timeout=10)
            first_at = loop.time()
            second = await seen.wait_for(lambda e: e.message == "second", timeout=10)
            gap = loop.time() - first_at
            running = await queue.client.get(job.id)
            release.set()
            done = await queue.client.wait(job.id, timeout=10)

    assert (first.fraction, second.fraction) == (0.1, 0.2)
    assert gap >= 0.8  # the throttle held it back for about a second
    assert running is not None
    assert running.status is JobStatus.PROCESSING
    assert running.progress is not None
    assert running.progress.message == "second"
    assert done.status is JobStatus.COMPLETED
    assert [e.message for e in seen.events] == ["first", "second"]  # nothing left to flush


async def test_a_progress_write_for_another_attempt_or_worker_changes_nothing(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    release = asyncio.Event()

    @queue.task
    async def long_job(ctx: JobContext) -> None:
        await ctx.progress(0.5, "own report")
        await release.wait()

    async with queue:
        with queue.events.record(events.JobProgress) as seen:
            job = await queue.client.enqueue("long_job")
            await seen.wait_for(lambda e: e.job_id == job.id, timeout=10)
        backend = queue._backend
        assert backend is not None
        row = await backend.job_get(job.id)
        assert row is not None
        assert row.worker_id is not None

        def params(attempt: int, worker_id: str, message: str) -> JobProgressParams:
            return JobProgressParams(
                id=row.id,
                attempt=attempt,
                worker_id=worker_id,
                fraction=0.9,
                message=message,
                at=datetime.now(UTC),
            )

        own = await queue.client.get(job.id)
        assert own is not None
        assert own.progress is not None
        stale_attempt = await backend.job_progress(params(row.attempts + 1, row.worker_id, "a"))
        other_worker = await backend.job_progress(
            params(row.attempts, "00000000-0000-0000-0000-000000000000", "b")
        )
        after = await queue.client.get(job.id)
        right = await backend.job_progress(params(row.attempts, row.worker_id, "right"))
        accepted = await queue.client.get(job.id)
        release.set()
        done = await queue.client.wait(job.id, timeout=10)
        late = await backend.job_progress(params(row.attempts, row.worker_id, "late"))
        final = await queue.client.get(job.id)

    assert (stale_attempt, other_worker) == (False, False)
    assert after is not None
    assert after.progress == own.progress
    assert own.progress.message == "own report"
    assert right is True  # the same write with the right fence lands
    assert accepted is not None
    assert accepted.progress is not None
    assert accepted.progress.message == "right"
    assert done.status is JobStatus.COMPLETED
    assert late is False  # once the job ended, no attempt's report lands
    assert final is not None
    assert final.progress == accepted.progress


async def test_a_failed_progress_write_is_logged_and_the_attempt_goes_on(
    make_queue: Callable[..., EQueue],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = make_queue()

    async def broken(self: Store, *args: object) -> bool:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(Store, "progress", broken)

    @queue.task(max_attempts=1)
    async def reports(ctx: JobContext) -> str:
        await ctx.progress(0.5)
        await ctx.progress(1.0)
        return "done anyway"

    caplog.set_level(logging.WARNING, logger="fastapi_equeue.runtime.progress")
    async with queue:
        job = await queue.client.enqueue("reports")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert done.result == "done anyway"
    assert done.progress is None
    failures = [r for r in caplog.records if "could not store the progress" in r.getMessage()]
    assert len(failures) == 2  # the first report, and the last one at the attempt's end
    assert job.id in failures[0].getMessage()


async def test_no_progress_writer_outlives_its_attempt(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task
    async def chatty(ctx: JobContext) -> None:
        for i in range(10):
            await ctx.progress(i / 10)

    async with queue:
        job = await queue.client.enqueue("chatty")
        await queue.client.wait(job.id, timeout=10)
        writers = [t for t in asyncio.all_tasks() if t.get_name().startswith("equeue-progress-")]

    assert writers == []
