"""Failed attempts: retries with their delays, the error history, timeouts and capped tracebacks."""

import asyncio
import contextlib
import gc
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta

from fastapi_equeue import EQueue, Job, JobStatus, QueueClient
from fastapi_equeue.config import MAX_TRACEBACK_CHARS
from fastapi_equeue.testing import eventually


def _in_status(
    client: QueueClient, job_id: str, status: JobStatus, attempts: int
) -> Callable[[], Awaitable[Job | None]]:
    async def probe() -> Job | None:
        job = await client.get(job_id)
        assert job is not None
        return job if job.status is status and job.attempts == attempts else None

    return probe


async def test_task_failing_twice_then_succeeding_completes_on_its_third_attempt(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    calls = 0

    @queue.task(max_attempts=3, retry_delay=0)
    async def flaky(label: str) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError(f"{label} failed on call {calls}")
        return f"{label} done"

    async with queue:
        job = await queue.client.enqueue("flaky", {"label": "sync"})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert done.result == "sync done"
    assert done.attempts == 3
    assert calls == 3
    assert [(e.attempt, e.error) for e in done.errors] == [
        (1, "ValueError: sync failed on call 1"),
        (2, "ValueError: sync failed on call 2"),
    ]
    for error in done.errors:
        assert error.traceback is not None
        assert error.traceback.startswith("Traceback (most recent call last):")
        assert "in flaky" in error.traceback
        assert error.at.tzinfo is not None
        assert done.created_at <= error.at <= done.finished_at  # type: ignore[operator]
    assert done.errors[0].at <= done.errors[1].at
    # last_error keeps the latest failed attempt's error, even after a success.
    assert done.last_error == "ValueError: sync failed on call 2"


async def test_task_that_always_fails_ends_failed_with_every_attempts_error(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task(max_attempts=4, retry_delay=0)
    async def doomed() -> None:
        raise RuntimeError("no luck")

    async with queue:
        job = await queue.client.enqueue("doomed")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.attempts == 4
    assert done.max_attempts == 4
    assert [e.attempt for e in done.errors] == [1, 2, 3, 4]
    assert {e.error for e in done.errors} == {"RuntimeError: no luck"}
    assert done.last_error == "RuntimeError: no luck"
    assert done.result is None
    assert done.finished_at is not None


async def test_enqueue_max_attempts_overrides_the_tasks(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue()

    @queue.task(max_attempts=5, retry_delay=0)
    async def doomed() -> None:
        raise RuntimeError("no luck")

    async with queue:
        job = await queue.client.enqueue("doomed", max_attempts=2)
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.max_attempts == 2
    assert done.attempts == 2
    assert len(done.errors) == 2


async def test_failed_attempt_leaves_the_job_retrying_until_its_retry_delay(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task(max_attempts=2, retry_delay=30)
    async def flaky() -> None:
        raise ValueError("not yet")

    async with queue:
        job = await queue.client.enqueue("flaky")
        retrying = await eventually(
            _in_status(queue.client, job.id, JobStatus.RETRYING, attempts=1), timeout=10
        )

    assert retrying.finished_at is None
    assert retrying.last_error == "ValueError: not yet"
    assert [e.attempt for e in retrying.errors] == [1]
    assert retrying.started_at is not None
    # The next attempt is due retry_delay after this one (both times from the same clock).
    wait = retrying.scheduled_at - retrying.started_at
    assert timedelta(seconds=29.5) <= wait <= timedelta(seconds=35)


async def test_retry_delay_callable_receives_the_attempt_number(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    asked: list[int] = []

    def delay(attempt: int) -> float:
        asked.append(attempt)
        return 0 if attempt == 1 else 60

    @queue.task(max_attempts=3, retry_delay=delay)
    async def flaky() -> None:
        raise ValueError("again")

    async with queue:
        job = await queue.client.enqueue("flaky")
        retrying = await eventually(
            _in_status(queue.client, job.id, JobStatus.RETRYING, attempts=2), timeout=10
        )

    assert asked == [1, 2]
    # The second delay (60 s) is the one the job now waits out.
    assert retrying.started_at is not None
    wait = retrying.scheduled_at - retrying.started_at
    assert timedelta(seconds=59.5) <= wait <= timedelta(seconds=65)
    assert [e.attempt for e in retrying.errors] == [1, 2]


async def test_async_attempt_running_past_its_timeout_fails_with_timeout_error(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    interrupted = asyncio.Event()

    @queue.task(max_attempts=1, timeout=0.2)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    async with queue:
        job = await queue.client.enqueue("slow")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.attempts == 1
    assert done.last_error is not None
    assert done.last_error.startswith("TimeoutError")
    assert "0.2" in done.last_error
    assert [e.error for e in done.errors] == [done.last_error]
    assert interrupted.is_set()


async def test_timed_out_attempt_is_retried_like_a_failure(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    calls = 0

    @queue.task(max_attempts=2, timeout=0.2, retry_delay=0)
    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        return "fast"

    async with queue:
        job = await queue.client.enqueue("slow_then_fast")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert done.result == "fast"
    assert done.attempts == 2
    assert [e.error.split(":")[0] for e in done.errors] == ["TimeoutError"]


async def test_sync_attempt_running_past_its_timeout_fails_with_timeout_error(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    release = threading.Event()

    @queue.task(max_attempts=1, timeout=0.2)
    def stuck() -> None:
        release.wait(10)

    try:
        async with queue:
            job = await queue.client.enqueue("stuck")
            done = await queue.client.wait(job.id, timeout=10)
    finally:
        release.set()  # the abandoned thread is ours to end

    assert done.status is JobStatus.FAILED
    assert done.last_error is not None
    assert done.last_error.startswith("TimeoutError")


def _recurse(depth: int) -> None:
    if depth == 0:
        raise ValueError("boom " + "x" * 50_000)
    _recurse(depth - 1)


async def test_traceback_of_a_huge_error_is_capped(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue()

    @queue.task(max_attempts=1)
    async def explode(depth: int) -> None:
        _recurse(depth)

    async with queue:
        job = await queue.client.enqueue("explode", {"depth": 200})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    (error,) = done.errors
    assert error.traceback is not None
    assert len(error.traceback.encode()) <= MAX_TRACEBACK_CHARS == 8 * 1024
    # The end of the traceback (the raising frame and the message) is what is kept.
    assert error.traceback.startswith("...(truncated)")
    assert error.traceback.rstrip().endswith("x" * 100)
    assert error.error.startswith("ValueError: boom xxx")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


async def test_exception_that_cannot_be_printed_still_counts_as_a_failed_attempt(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    runs = 0

    @queue.task(max_attempts=2, retry_delay=0)
    async def odd() -> None:
        nonlocal runs
        runs += 1
        raise _Unprintable

    async with queue:
        job = await queue.client.enqueue("odd")
        with contextlib.suppress(TimeoutError):
            await queue.client.wait(job.id, timeout=5)
        done = await queue.client.get(job.id)
    # Should an attempt have crashed the runtime, its task's unretrieved exception is logged
    # when the task is collected: collect it now, not in the middle of pytest's report.
    gc.collect()

    assert done is not None
    assert done.status is JobStatus.FAILED
    assert done.attempts == 2
    assert runs == 2
    assert done.last_error is not None
    assert done.last_error.startswith("_Unprintable")
    assert [e.attempt for e in done.errors] == [1, 2]
