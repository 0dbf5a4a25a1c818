"""What the ``fastapi_equeue`` loggers say about a job's life, each line naming the job."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from fastapi_equeue import EQueue, JobStatus

ClaimForDeadWorker = Callable[[EQueue, str], Awaitable[str]]


def _events(caplog: pytest.LogCaptureFixture, job_id: str) -> list[str]:
    """The lines logged about ``job_id``, each reduced to what happened (before " id=")."""
    return [
        record.getMessage().split(" id=")[0]
        for record in caplog.records
        if record.name.startswith("fastapi_equeue") and f"id={job_id}" in record.getMessage()
    ]


@pytest.fixture(autouse=True)
def _capture_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_equeue")


async def test_job_that_fails_once_then_succeeds_logs_each_step(
    make_queue: Callable[..., EQueue], caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue()
    calls = 0

    @queue.task(max_attempts=2, retry_delay=0)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first try")
        return "ok"

    async with queue:
        job = await queue.client.enqueue("flaky")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert _events(caplog, job.id) == [
        "job queued",
        "job processing",
        "job retrying",
        "job processing",
        "job completed",
    ]
    retrying = next(r for r in caplog.records if r.getMessage().startswith("job retrying"))
    assert "ValueError: first try" in retrying.getMessage()
    assert retrying.levelno == logging.WARNING
    # Structured fields for log processors that want them.
    completed = next(r for r in caplog.records if r.getMessage().startswith("job completed"))
    assert completed.job_id == job.id  # type: ignore[attr-defined]
    assert completed.job_type == "flaky"  # type: ignore[attr-defined]
    assert completed.queue == "default"  # type: ignore[attr-defined]
    assert completed.status == "completed"  # type: ignore[attr-defined]
    assert completed.attempt == 2  # type: ignore[attr-defined]


async def test_final_failure_logs_failed(
    make_queue: Callable[..., EQueue], caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue()

    @queue.task(max_attempts=1)
    async def doomed() -> None:
        raise RuntimeError("out of luck")

    async with queue:
        job = await queue.client.enqueue("doomed")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert _events(caplog, job.id) == ["job queued", "job processing", "job failed"]
    failed = next(r for r in caplog.records if r.getMessage().startswith("job failed"))
    assert failed.levelno == logging.WARNING
    assert "RuntimeError: out of luck" in failed.getMessage()


async def test_cancel_logs_cancelled(
    make_queue: Callable[..., EQueue], caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue()
    started = asyncio.Event()
    never = asyncio.Event()

    @queue.task
    async def block() -> None:
        started.set()
        await never.wait()

    async with queue:
        waiting = await queue.client.enqueue("block", delay=60)
        await queue.client.cancel(waiting.id)
        running = await queue.client.enqueue("block")
        await asyncio.wait_for(started.wait(), 10)
        await queue.client.cancel(running.id)
        done = await queue.client.wait(running.id, timeout=10)

    assert done.status is JobStatus.CANCELLED
    assert _events(caplog, waiting.id) == ["job queued", "job cancelled"]
    assert _events(caplog, running.id) == [
        "job queued",
        "job processing",
        "job cancel requested",
        "job cancelled",
    ]


async def test_rescue_logs_rescued(
    make_queue: Callable[..., EQueue],
    caplog: pytest.LogCaptureFixture,
    claim_for_dead_worker: ClaimForDeadWorker,
) -> None:
    queue = make_queue()

    @queue.task
    async def resilient() -> str:
        return "ok"

    async with queue.connected() as client:
        job = await client.enqueue("resilient")
        await claim_for_dead_worker(queue, job.id)
        async with queue.workers(1, None):
            done = await client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    events = _events(caplog, job.id)
    assert events[0] == "job queued"
    # The rescue's NOTIFY may wake this worker's producer (which logs "processing") before the
    # rescuer has logged its own line: the two may come in either order.
    assert sorted(events[1:-1]) == ["job processing", "job rescued from a lost worker"]
    assert events[-1] == "job completed"
    rescued = next(r for r in caplog.records if "rescued" in r.getMessage())
    assert rescued.levelno == logging.WARNING
    assert rescued.job_id == job.id  # type: ignore[attr-defined]
