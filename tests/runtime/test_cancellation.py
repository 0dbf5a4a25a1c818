"""Cancelling jobs (waiting, running, finished), ids that are not ours, and manual retries."""

import asyncio
import threading
from collections.abc import Callable

import pytest

from fastapi_equeue import EQueue, InvalidTransition, JobNotFound, JobStatus
from fastapi_equeue.testing import drain, eventually

NOT_IDS = ["not-a-uuid", "", "x" * 1000, "01a20f0e-dcf2-73b7-97b7-c956684f8f5", "../etc/passwd"]
UNKNOWN_ID = "01a20f0e-dcf2-73b7-97b7-c956684f8f5c"


async def test_cancelling_a_queued_job_cancels_it_at_once_and_it_never_runs(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    ran: list[int] = []

    @queue.task
    async def note(n: int) -> None:
        ran.append(n)

    async with queue:
        job = await queue.client.enqueue("note", {"n": 1})
        kept = await queue.client.enqueue("note", {"n": 2})
        cancelled = await queue.client.cancel(job.id)
        assert cancelled.status is JobStatus.CANCELLED
        assert cancelled.finished_at is not None
        await drain(queue)
        after = await queue.client.get(job.id)
        other = await queue.client.get(kept.id)

    assert after is not None
    assert after.status is JobStatus.CANCELLED
    assert after.attempts == 0
    assert after.started_at is None
    assert other is not None
    assert other.status is JobStatus.COMPLETED
    assert ran == [2]


async def test_cancelling_a_retrying_job_cancels_it_at_once(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task(max_attempts=3, retry_delay=60)
    async def flaky() -> None:
        raise ValueError("later")

    async def retrying() -> bool:
        job = await queue.client.get(job_id)
        return job is not None and job.status is JobStatus.RETRYING

    async with queue:
        job_id = (await queue.client.enqueue("flaky")).id
        await eventually(retrying, timeout=10)
        cancelled = await queue.client.cancel(job_id)

    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.attempts == 1
    assert cancelled.finished_at is not None
    assert [e.error for e in cancelled.errors] == ["ValueError: later"]


async def test_cancelling_a_running_job_ends_it_cancelled(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    started = asyncio.Event()
    never = asyncio.Event()
    interrupted = asyncio.Event()

    @queue.task
    async def block() -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            interrupted.set()
            raise

    async with queue:
        job = await queue.client.enqueue("block")
        await asyncio.wait_for(started.wait(), 10)
        requested = await queue.client.cancel(job.id)
        done = await queue.client.wait(job.id, timeout=10)

    # The worker cancels it: until then it is still running.
    assert requested.status is JobStatus.PROCESSING
    assert done.status is JobStatus.CANCELLED
    assert done.attempts == 1
    assert done.finished_at is not None
    assert done.errors == []
    assert done.result is None
    assert interrupted.is_set()


async def test_cancelling_a_running_sync_job_ends_it_cancelled(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    started = threading.Event()
    release = threading.Event()

    @queue.task
    def block() -> None:
        started.set()
        release.wait(10)

    try:
        async with queue:
            job = await queue.client.enqueue("block")
            assert await asyncio.to_thread(started.wait, 10)
            await queue.client.cancel(job.id)
            done = await queue.client.wait(job.id, timeout=10)
    finally:
        release.set()

    assert done.status is JobStatus.CANCELLED
    assert done.attempts == 1


async def test_cancel_from_another_queue_instance_reaches_the_running_job(
    make_queue: Callable[..., EQueue],
) -> None:
    # Another process's cancel: on SQLite the worker finds it by its periodic check,
    # on PostgreSQL by NOTIFY.
    worker = make_queue()
    other = make_queue(concurrency=0)
    started = asyncio.Event()
    never = asyncio.Event()

    @worker.task
    async def block() -> None:
        started.set()
        await never.wait()

    async with worker, other:
        job = await worker.client.enqueue("block")
        await asyncio.wait_for(started.wait(), 10)
        await other.client.cancel(job.id)
        done = await other.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.CANCELLED
    assert done.attempts == 1


@pytest.mark.postgres_only
async def test_cancel_reaches_the_running_job_by_notify_before_any_periodic_check(
    make_queue: Callable[..., EQueue],
) -> None:
    # Every periodic loop is 30 s or more apart: only NOTIFY can deliver the cancel in time.
    worker = make_queue(poll_interval=30, heartbeat_interval=30, stalled_after=60)
    other = make_queue(concurrency=0, poll_interval=30, heartbeat_interval=30, stalled_after=60)
    started = asyncio.Event()
    never = asyncio.Event()

    @worker.task
    async def block() -> None:
        started.set()
        await never.wait()

    async with worker, other:
        job = await worker.client.enqueue("block")
        await asyncio.wait_for(started.wait(), 5)
        await other.client.cancel(job.id)
        done = await other.client.wait(job.id, timeout=5)

    assert done.status is JobStatus.CANCELLED


async def test_cancel_requested_while_the_attempt_fails_ends_cancelled_not_retried(
    make_queue: Callable[..., EQueue],
) -> None:
    # The attempt fails right after the cancel is recorded, before its worker hears of it (on
    # SQLite another instance's cancel is only found by the worker's periodic check; on
    # PostgreSQL NOTIFY usually wins this race). The request must not be lost.
    worker = make_queue()
    other = make_queue(concurrency=0)
    started = asyncio.Event()
    cancel_recorded = asyncio.Event()
    runs = 0

    @worker.task(max_attempts=3, retry_delay=0)
    async def fragile() -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            started.set()
            await cancel_recorded.wait()
            raise ValueError("failed as the cancel came in")
        return "ran again"

    async with worker, other:
        job = await worker.client.enqueue("fragile")
        await asyncio.wait_for(started.wait(), 10)
        requested = await other.client.cancel(job.id)
        cancel_recorded.set()
        done = await other.client.wait(job.id, timeout=10)

    assert requested.status is JobStatus.PROCESSING
    assert done.status is JobStatus.CANCELLED
    assert done.result is None
    assert runs == 1


async def test_cancelling_a_finished_job_raises_invalid_transition_with_its_status(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task(max_attempts=1)
    async def outcome(fail: bool) -> str:
        if fail:
            raise ValueError("failed on purpose")
        return "ok"

    async with queue:
        completed = await queue.client.enqueue("outcome", {"fail": False})
        failed = await queue.client.enqueue("outcome", {"fail": True})
        cancelled = await queue.client.enqueue("outcome", {"fail": False}, delay=60)
        await queue.client.cancel(cancelled.id)
        await queue.client.wait(completed.id, timeout=10)
        await queue.client.wait(failed.id, timeout=10)

        for job, status in (
            (completed, JobStatus.COMPLETED),
            (failed, JobStatus.FAILED),
            (cancelled, JobStatus.CANCELLED),
        ):
            with pytest.raises(InvalidTransition) as caught:
                await queue.client.cancel(job.id)
            assert caught.value.status is status
            assert caught.value.job_id == job.id
            after = await queue.client.get(job.id)
            assert after is not None
            assert after.status is status


async def test_ids_that_are_not_jobs_are_not_found(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)

    async with queue:
        for job_id in [*NOT_IDS, UNKNOWN_ID]:
            assert await queue.client.get(job_id) is None
            with pytest.raises(JobNotFound):
                await queue.client.cancel(job_id)
            with pytest.raises(JobNotFound):
                await queue.client.retry(job_id)
            with pytest.raises(JobNotFound):
                await queue.client.wait(job_id, timeout=1)


async def test_manual_retry_of_a_failed_job_queues_it_afresh_and_keeps_its_errors(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    calls = 0

    @queue.task(max_attempts=2, retry_delay=0)
    async def fragile() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ValueError(f"call {calls}")
        return "recovered"

    async with queue:
        job = await queue.client.enqueue("fragile")
        failed = await queue.client.wait(job.id, timeout=10)
        assert failed.status is JobStatus.FAILED
        requeued = await queue.client.retry(job.id)
        done = await queue.client.wait(job.id, timeout=10)

    assert requeued.status is JobStatus.QUEUED
    assert requeued.attempts == 0
    assert requeued.finished_at is None
    assert requeued.started_at is None
    assert [e.error for e in requeued.errors] == ["ValueError: call 1", "ValueError: call 2"]
    assert requeued.last_error == "ValueError: call 2"
    assert done.status is JobStatus.COMPLETED
    assert done.result == "recovered"
    assert done.attempts == 1
    assert [e.error for e in done.errors] == ["ValueError: call 1", "ValueError: call 2"]
    assert calls == 3


async def test_manual_retry_of_a_cancelled_job_runs_it(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(concurrency=0)
    ran: list[str] = []

    @queue.task
    async def note(text: str) -> str:
        ran.append(text)
        return text

    async with queue:
        job = await queue.client.enqueue("note", {"text": "again"})
        await queue.client.cancel(job.id)
        requeued = await queue.client.retry(job.id)
        await drain(queue)
        done = await queue.client.get(job.id)

    assert requeued.status is JobStatus.QUEUED
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert ran == ["again"]


async def test_manual_retry_of_a_job_that_is_not_failed_or_cancelled_is_refused(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)

    @queue.task
    async def note() -> None:
        return None

    async with queue:
        queued = await queue.client.enqueue("note")
        with pytest.raises(InvalidTransition) as caught:
            await queue.client.retry(queued.id)
        assert caught.value.status is JobStatus.QUEUED
        await drain(queue)
        with pytest.raises(InvalidTransition) as caught:
            await queue.client.retry(queued.id)
        assert caught.value.status is JobStatus.COMPLETED
