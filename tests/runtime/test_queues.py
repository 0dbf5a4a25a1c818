"""Queues as the runtime sees them, on both backends: which queues a worker serves, limits
obeyed by every worker (measured from what the tasks record, not from the library's
counters), and no busy loop for a queue that cannot start anything."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from fastapi_equeue import EQueue, JobStatus, events
from fastapi_equeue.backend import JobClaimParams
from fastapi_equeue.backends.postgres.backend import PostgresBackend
from fastapi_equeue.backends.sqlite.backend import SQLiteBackend
from fastapi_equeue.testing import ManualClock

DEADLINE = 15.0


@dataclass
class Runs:
    """What the tasks record of themselves: (start, end) per run, and how many ran at once."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    running: int = 0
    most: int = 0

    def most_at_once(self) -> int:
        edges = sorted([(s, 1) for s, _ in self.spans] + [(e, -1) for _, e in self.spans])
        level = peak = 0
        for _, step in edges:
            level += step
            peak = max(peak, level)
        return peak


def add_timed(queue: EQueue, runs: Runs, seconds: float = 0.05) -> None:
    @queue.task(queue="limited")
    async def timed(n: int) -> int:
        start = time.monotonic()
        runs.running += 1
        runs.most = max(runs.most, runs.running)
        try:
            await asyncio.sleep(seconds)  # simulated work
        finally:
            runs.running -= 1
            runs.spans.append((start, time.monotonic()))
        return n


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts every claim a backend runs, per queue."""
    counted: dict[str, int] = {}
    for backend in (PostgresBackend, SQLiteBackend):
        original = backend.job_claim

        async def counting(self: Any, params: JobClaimParams, original: Any = original) -> Any:
            counted[params.queue] = counted.get(params.queue, 0) + 1
            return await original(self, params)

        monkeypatch.setattr(backend, "job_claim", counting)
    return counted


@dataclass
class SettingsReads:
    """The workers' reads of queue settings: how many began, and which have returned."""

    began: int = 0
    returned: list[int] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def one_begun_after(self, mark: int) -> None:
        """Return once a read that began after the ``mark``-th one has returned."""
        async with asyncio.timeout(DEADLINE):
            while not any(n > mark for n in self.returned):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def settings_reads(monkeypatch: pytest.MonkeyPatch) -> SettingsReads:
    """Records every read of queue settings (``queue_find``) a backend runs."""
    reads = SettingsReads()
    for backend in (PostgresBackend, SQLiteBackend):
        original = backend.queue_find

        async def recording(self: Any, queues: Any, original: Any = original) -> Any:
            reads.began += 1
            n = reads.began
            try:
                return await original(self, queues)
            finally:
                reads.returned.append(n)
                reads.changed.set()

        monkeypatch.setattr(backend, "queue_find", recording)
    return reads


async def test_a_worker_serving_every_queue_takes_up_a_queue_that_appears_later(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task
    async def echo(text: str) -> str:
        return text

    async with queue:
        first = await queue.client.enqueue("echo", {"text": "a"}, queue="early")
        await queue.client.wait(first.id, timeout=DEADLINE)
        late = await queue.client.enqueue("echo", {"text": "b"}, queue="late")
        done = await queue.client.wait(late.id, timeout=DEADLINE)

    assert done.status is JobStatus.COMPLETED


async def test_a_worker_given_queues_never_takes_another(make_queue: Callable[..., EQueue]) -> None:
    worker = make_queue(queues=["mail"])
    client = make_queue(concurrency=0)
    for queue in (worker, client):

        @queue.task
        async def echo(text: str) -> str:
            return text

    async with worker, client:
        other = await client.client.enqueue("echo", {"text": "x"}, queue="reports")
        mine = await client.client.enqueue("echo", {"text": "y"}, queue="mail")
        await client.client.wait(mine.id, timeout=DEADLINE)
        still = await client.client.get(other.id)

    assert still is not None
    assert still.status is JobStatus.QUEUED


async def test_a_concurrency_limit_holds_across_two_workers(
    make_queue: Callable[..., EQueue],
) -> None:
    runs = Runs()
    one, two = make_queue(concurrency=10), make_queue(concurrency=10)
    for queue in (one, two):
        add_timed(queue, runs)

    async with one, two:
        await one.client.configure_queue("limited", concurrency=3)
        jobs = await one.client.enqueue_many(
            [{"job_type": "timed", "payload": {"n": n}} for n in range(30)]
        )
        done = [await one.client.wait(job.id, timeout=DEADLINE) for job in jobs]

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    assert runs.most_at_once() == 3
    assert runs.most == 3


async def test_a_paused_queue_is_not_claimed_from_whatever_is_enqueued(
    make_queue: Callable[..., EQueue], claims: dict[str, int]
) -> None:
    # A manual clock: no poll ever comes, so every claim would be one a notification caused.
    queue = make_queue(clock=ManualClock())

    @queue.task
    async def echo(text: str) -> str:
        return text

    with queue.events.record(events.JobCompleted) as done:
        async with queue:
            await queue.client.pause_queue("quiet")
            claims.clear()
            paused = [
                await queue.client.enqueue("echo", {"text": str(n)}, queue="quiet")
                for n in range(20)
            ]
            # Another queue's job runs: the worker heard and claimed meanwhile.
            other = await queue.client.enqueue("echo", {"text": "x"}, queue="busy")
            await done.wait_for(lambda e: e.job_id == other.id, timeout=DEADLINE)

            assert claims.get("quiet", 0) <= 1
            await queue.client.resume_queue("quiet")
            await done.wait_count(21, timeout=DEADLINE)

    assert {e.job_id for e in done.events} == {job.id for job in paused} | {other.id}


async def test_a_queue_paused_after_it_ran_is_not_claimed_from_when_jobs_come(
    make_queue: Callable[..., EQueue], claims: dict[str, int], settings_reads: SettingsReads
) -> None:
    # Its producer outlives its work: the pause must reach it although the queue has nothing
    # due when the settings are read. A manual clock: no poll ever comes.
    queue = make_queue(clock=ManualClock())

    @queue.task
    async def echo(text: str) -> str:
        return text

    with queue.events.record(events.JobCompleted, events.QueuePaused) as seen:
        async with queue:
            first = await queue.client.enqueue("echo", {"text": "1"}, queue="quiet")
            await seen.wait_for(lambda e: getattr(e, "job_id", None) == first.id, timeout=DEADLINE)
            mark = settings_reads.began
            await queue.client.pause_queue("quiet")
            # The pause's notification makes the worker read the settings again; the test
            # goes on once a read begun after the pause has returned (the worker applies what
            # it read at once), not before.
            await settings_reads.one_begun_after(mark)
            marker = await queue.client.enqueue("echo", {"text": "m"}, queue="busy")
            await seen.wait_for(lambda e: getattr(e, "job_id", None) == marker.id, timeout=DEADLINE)
            claims.clear()
            paused = [
                await queue.client.enqueue("echo", {"text": str(n)}, queue="quiet")
                for n in range(20)
            ]
            other = await queue.client.enqueue("echo", {"text": "x"}, queue="busy")
            await seen.wait_for(lambda e: getattr(e, "job_id", None) == other.id, timeout=DEADLINE)

            assert claims.get("quiet", 0) == 0
            await queue.client.resume_queue("quiet")
            await seen.wait_count(
                23, lambda e: isinstance(e, events.JobCompleted), timeout=DEADLINE
            )

    completed = {e.job_id for e in seen.events if isinstance(e, events.JobCompleted)}
    assert completed >= {job.id for job in paused}


async def test_a_queue_at_its_limit_is_not_claimed_from_for_every_enqueue(
    make_queue: Callable[..., EQueue], claims: dict[str, int]
) -> None:
    # A manual clock: no poll ever comes, so every claim would be one a notification caused.
    queue = make_queue(clock=ManualClock())
    started = asyncio.Event()
    release = asyncio.Event()

    @queue.task(queue="limited")
    async def hold() -> None:
        started.set()
        await release.wait()

    @queue.task(queue="limited")
    async def quick() -> None:
        return None

    @queue.task(queue="probe")
    async def probe() -> None:
        return None

    with queue.events.record(events.JobCompleted) as done:
        async with queue:
            await queue.client.configure_queue("limited", concurrency=1)
            held = await queue.client.enqueue("hold")
            await asyncio.wait_for(started.wait(), DEADLINE)
            claims.clear()
            waiting = [await queue.client.enqueue("quick") for _ in range(20)]
            # A job of another queue, enqueued last, runs once the worker has heard of all 20.
            last = await queue.client.enqueue("probe")
            await done.wait_for(lambda e: e.job_id == last.id, timeout=DEADLINE)

            # Held back by its limit, the queue is not asked again for each new job.
            assert claims.get("limited", 0) <= 2
            release.set()
            await done.wait_count(22, timeout=DEADLINE)

    assert {e.job_id for e in done.events} == {held.id, last.id} | {job.id for job in waiting}
