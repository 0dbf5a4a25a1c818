"""Stopping and dying: graceful shutdown within and past its grace, rescue of a dead worker's jobs,
zombie writes, and two queues on two databases in one process."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from fastapi_equeue import EQueue, JobStatus, UnknownJobType
from fastapi_equeue.backend import JobCompleteParams
from fastapi_equeue.jobs import new_job_id

ClaimForDeadWorker = Callable[[EQueue, str], Awaitable[str]]


async def test_job_finishing_within_shutdown_grace_completes(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(shutdown_grace=5)
    started = asyncio.Event()

    @queue.task
    async def wrap_up() -> str:
        started.set()
        await asyncio.sleep(0.3)  # work still in progress when shutdown begins
        return "finished"

    async with queue:
        job = await queue.client.enqueue("wrap_up")
        await asyncio.wait_for(started.wait(), 10)

    async with queue.connected() as client:
        done = await client.get(job.id)

    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.result == "finished"
    assert done.attempts == 1


async def test_job_running_past_shutdown_grace_goes_back_queued_uncounted(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(shutdown_grace=0.3)
    started = asyncio.Event()
    release = asyncio.Event()
    interrupted: list[int] = []

    @queue.task(max_attempts=1)
    async def long_haul(n: int) -> int:
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            interrupted.append(n)
            raise
        return n

    async with queue:
        job = await queue.client.enqueue("long_haul", {"n": 7})
        await asyncio.wait_for(started.wait(), 10)

    async with queue.connected() as client:
        put_back = await client.get(job.id)

    assert interrupted == [7]
    assert put_back is not None
    assert put_back.status is JobStatus.QUEUED
    assert put_back.attempts == 0
    assert put_back.errors == []
    assert put_back.last_error is None
    assert put_back.started_at is None
    assert put_back.finished_at is None

    # Its one attempt was not used up: the next start runs it to the end.
    release.set()
    async with queue:
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert done.result == 7
    assert done.attempts == 1


async def test_job_of_a_dead_worker_is_rescued_and_runs_to_completion(
    make_queue: Callable[..., EQueue], claim_for_dead_worker: ClaimForDeadWorker
) -> None:
    queue = make_queue()
    started = asyncio.Event()
    release = asyncio.Event()

    @queue.task(max_attempts=3)
    async def resilient() -> str:
        started.set()
        await asyncio.wait_for(release.wait(), 10)
        return "live"

    async with queue.connected() as client:
        job = await client.enqueue("resilient")
        dead_worker = await claim_for_dead_worker(queue, job.id)
        backend = queue._backend
        assert backend is not None

        async with queue.workers(2, None):
            # stalled_after (1 s) after its last beat, the dead worker's job comes back here.
            await asyncio.wait_for(started.wait(), 10)
            running = await client.get(job.id)
            # The dead worker wakes up and reports its attempt: the fence refuses it.
            zombie = [
                JobCompleteParams(
                    id=job.id, attempt=1, worker_id=dead_worker, status="completed", result="z"
                ),
                JobCompleteParams(
                    id=job.id, attempt=2, worker_id=dead_worker, status="completed", result="z"
                ),
            ]
            assert await backend.job_complete_many(zombie) == {}
            still_running = await client.get(job.id)
            release.set()
            done = await client.wait(job.id, timeout=10)

        # Even after the job has finished, a zombie's word changes nothing.
        late = JobCompleteParams(
            id=job.id, attempt=1, worker_id=dead_worker, status="failed", result=None
        )
        assert await backend.job_complete_many([late]) == {}
        final = await client.get(job.id)

    assert running is not None
    assert running.status is JobStatus.PROCESSING
    assert running.attempts == 2
    assert still_running == running
    assert done.status is JobStatus.COMPLETED
    assert done.result == "live"
    assert done.attempts == 2
    (lost,) = done.errors
    assert lost.attempt == 1
    assert lost.error.startswith("WorkerLost")
    assert done.last_error is not None
    assert done.last_error.startswith("WorkerLost")
    assert final == done


async def test_dead_workers_job_on_its_last_attempt_ends_failed(
    make_queue: Callable[..., EQueue], claim_for_dead_worker: ClaimForDeadWorker
) -> None:
    queue = make_queue()
    ran: list[str] = []

    @queue.task(max_attempts=1)
    async def once() -> None:
        ran.append("once")

    async with queue.connected() as client:
        job = await client.enqueue("once")
        await claim_for_dead_worker(queue, job.id)
        async with queue.workers(1, None):
            done = await client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.attempts == 1
    assert done.finished_at is not None
    assert [e.error.split(":")[0] for e in done.errors] == ["WorkerLost"]
    assert ran == []


async def test_dead_workers_job_that_was_being_cancelled_ends_cancelled(
    make_queue: Callable[..., EQueue], claim_for_dead_worker: ClaimForDeadWorker
) -> None:
    queue = make_queue()
    ran: list[str] = []

    @queue.task
    async def doomed() -> None:
        ran.append("doomed")

    async with queue.connected() as client:
        job = await client.enqueue("doomed")
        await claim_for_dead_worker(queue, job.id)
        requested = await client.cancel(job.id)
        async with queue.workers(1, None):
            done = await client.wait(job.id, timeout=10)

    assert requested.status is JobStatus.PROCESSING
    assert done.status is JobStatus.CANCELLED
    assert ran == []


async def test_attempt_of_a_worker_declared_lost_is_abandoned_when_its_job_comes_back(
    make_queue: Callable[..., EQueue],
) -> None:
    # A live worker is declared lost (say its beats stalled during a database outage): another
    # worker's rescuer takes its job back, and this same worker may claim the job again at once.
    # The attempt that lost its lease must be cancelled, not left running beside the new one.
    # Beats 2 s apart: the claim that follows the rescue comes long before this worker's next
    # beat would tell it that it was declared lost.
    queue = make_queue(heartbeat_interval=2.0, stalled_after=4.0)
    attempts: list[int] = []
    running = 0
    first_started = asyncio.Event()
    first_cancelled = asyncio.Event()
    never = asyncio.Event()

    @queue.task(max_attempts=5)
    async def work() -> str:
        nonlocal running
        running += 1
        attempts.append(len(attempts) + 1)
        first = len(attempts) == 1
        try:
            if first:
                first_started.set()
                await never.wait()
        except asyncio.CancelledError:
            if first:
                first_cancelled.set()
            raise
        finally:
            running -= 1
        return "done"

    try:
        async with queue:
            backend = queue._backend
            assert backend is not None
            job = await queue.client.enqueue("work")
            await asyncio.wait_for(first_started.wait(), 10)
            # What a rescuer elsewhere does, in one statement: every silent worker (with a
            # threshold of 0 s, ours) is forgotten and its jobs go back to the queue.
            (rescued,) = (await backend.job_rescue_stalled(0.0, new_job_id())).jobs
            done = await queue.client.wait(job.id, timeout=10)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_cancelled.wait(), 5)
    finally:
        never.set()

    assert rescued.id == job.id
    assert rescued.status is JobStatus.QUEUED
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 2
    assert [e.error.split(":")[0] for e in done.errors] == ["WorkerLost"]
    assert first_cancelled.is_set(), "the attempt that lost its lease was left running"
    assert running == 0


async def test_two_queues_on_two_databases_never_see_each_other(
    make_queue: Callable[..., EQueue], other_database_url: str
) -> None:
    one = make_queue()
    two = EQueue(other_database_url, **_fast(one))
    ran: list[tuple[str, str]] = []

    @one.task
    async def only_in_one() -> str:
        return "one"

    @two.task
    async def only_in_two() -> str:
        return "two"

    # The same job type name in both, each with its own function.
    @one.task(name="shared")
    async def shared_one(text: str) -> str:
        ran.append(("one", text))
        return "one"

    @two.task(name="shared")
    async def shared_two(text: str) -> str:
        ran.append(("two", text))
        return "two"

    async with one, two:
        with pytest.raises(UnknownJobType):
            await one.client.enqueue("only_in_two")
        with pytest.raises(UnknownJobType):
            await two.client.enqueue("only_in_one")
        job_one = await one.client.enqueue("shared", {"text": "for one"})
        job_two = await two.client.enqueue("shared", {"text": "for two"})
        done_one = await one.client.wait(job_one.id, timeout=10)
        done_two = await two.client.wait(job_two.id, timeout=10)
        assert await one.client.get(job_two.id) is None
        assert await two.client.get(job_one.id) is None
        listed_one = [job.id for job in (await one.client.list()).items]
        listed_two = [job.id for job in (await two.client.list()).items]

    assert "only_in_one" in one.registry
    assert "only_in_one" not in two.registry
    assert "only_in_two" not in one.registry
    assert done_one.result == "one"
    assert done_two.result == "two"
    assert sorted(ran) == [("one", "for one"), ("two", "for two")]
    assert listed_one == [job_one.id]
    assert listed_two == [job_two.id]


def _fast(queue: EQueue) -> dict[str, float]:
    config = queue.config
    return {
        "poll_interval": config.poll_interval,
        "heartbeat_interval": config.heartbeat_interval,
        "stalled_after": config.stalled_after,
        "shutdown_grace": config.shutdown_grace,
    }
