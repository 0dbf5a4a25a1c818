"""Queue settings obeyed across worker processes: a concurrency limit, a rate limit and a pause,
set from the test process and obeyed by standalone workers (``worker_app:queue``) that share one
database, PostgreSQL or a SQLite file.

Everything is measured from the executions the task bodies record (their pid, and
``time.time()`` at the start and end of each body), never from the library's counters. Every
wait is for a condition, against a deadline; the only sleeps are the tasks' simulated work.
"""

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fastapi_equeue import Job, JobStatus, QueueClient
from tests.process.conftest import POLL, START_TIMEOUT, Worker, Workers
from tests.process.worker_app import build_queue

pytestmark = pytest.mark.process

WAIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Execution:
    """One task body that ran to its end: its token, its process, and when it ran."""

    token: str
    pid: int
    start: float
    end: float


def executions(workers: Workers) -> list[Execution]:
    """Every ``timed`` run recorded so far, by any worker, in the order written."""
    if not workers.executions.exists():
        return []
    records = []
    for line in workers.executions.read_text(encoding="utf-8").splitlines():
        token, pid, start, end = line.split(" ")
        records.append(Execution(token, int(pid), float(start), float(end)))
    return records


@pytest.fixture(params=["postgres", "sqlite"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database that the test process and its worker processes share: the run's migrated,
    empty PostgreSQL database, or a SQLite file (which the workers poll)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("process_url"))


@pytest.fixture
async def client(shared_url: str) -> AsyncIterator[QueueClient]:
    """An enqueue-only queue with the workers' tasks, started (which migrates a SQLite file
    before any worker opens it)."""
    queue = build_queue(shared_url, concurrency=0, poll_interval=POLL)
    async with queue:
        yield queue.client


@pytest.fixture
def workers(shared_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Workers on the shared database; whatever still runs at teardown is killed and reaped."""
    workers = Workers(shared_url, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


def start(workers: Workers, name: str, *args: str) -> Worker:
    # A fast poll, so that settings changes and freed rate windows are seen within 0.1 s; a
    # stall limit far above any job here, so that no job is rescued (and run twice) on a busy
    # machine.
    return workers.start(name, *args, EQUEUE_POLL_INTERVAL="0.1", EQUEUE_STALLED_AFTER="10")


def timed_jobs(prefix: str, count: int, seconds: float, queue: str) -> list[dict[str, object]]:
    return [
        {
            "job_type": "timed",
            "payload": {"token": f"{prefix}{n}", "seconds": seconds},
            "queue": queue,
        }
        for n in range(count)
    ]


async def finished(client: QueueClient, jobs: Iterable[Job], workers: Workers) -> list[Job]:
    """Wait for every one of ``jobs`` to end; fail with the workers' output after the deadline."""
    try:
        return list(
            await asyncio.gather(*(client.wait(job.id, timeout=WAIT_TIMEOUT) for job in jobs))
        )
    except TimeoutError:
        raise AssertionError(
            f"jobs did not finish within {WAIT_TIMEOUT}s\n{workers.output()}"
        ) from None


def most_overlapping(records: Iterable[Execution]) -> int:
    """The most [start, end] intervals that overlap at any instant."""
    # At equal times an end sorts before a start: an interval that ends as another begins does
    # not overlap it.
    events = sorted([(r.start, 1) for r in records] + [(r.end, -1) for r in records])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def most_starts_in_a_window(starts: Iterable[float], period: float) -> int:
    """The most starts in any window [s, s + period) anchored at a start s."""
    ordered = sorted(starts)
    return max(
        bisect.bisect_left(ordered, start + period) - index for index, start in enumerate(ordered)
    )


@pytest.mark.parametrize("slots", [2, 10], ids=["2-slots-each", "10-slots-each"])
async def test_concurrency_limit_holds_across_two_worker_processes(
    slots: int, client: QueueClient, workers: Workers
) -> None:
    # With 2 slots each, neither process can run 3 jobs alone: reaching 3 at once takes both, and
    # a limit ignored, or counted per process, would let 4 run. With 10 slots each, nothing but
    # the limit holds them to 3 (and nothing promises each process a share of the queue).
    await client.configure_queue("capped", concurrency=3)
    pool = [start(workers, f"worker-{n}", "--concurrency", str(slots)) for n in range(2)]
    await workers.serving(*pool)

    jobs = await client.enqueue_many(timed_jobs("c", 30, 0.2, "capped"))
    done = await finished(client, jobs, workers)

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    records = executions(workers)
    assert sorted(r.token for r in records) == sorted(f"c{n}" for n in range(30))
    assert {r.pid for r in records} <= {worker.pid for worker in pool}
    overlap = most_overlapping(records)
    span = max(r.end for r in records) - min(r.start for r in records)
    print(
        f"concurrency=3 over 2 processes of {slots} slots: most overlapping {overlap}, "
        f"span {span:.2f}s, jobs per pid {[sum(r.pid == w.pid for r in records) for w in pool]}"
    )
    assert overlap <= 3, f"{overlap} jobs of a queue limited to 3 ran at once"
    # The limit binds, and nothing stricter does.
    assert overlap == 3
    if slots < 3:
        assert {r.pid for r in records} == {worker.pid for worker in pool}


async def test_rate_limit_holds_in_every_window_across_two_worker_processes(
    client: QueueClient, workers: Workers
) -> None:
    await client.configure_queue("metered", rate="4/second")
    pool = [start(workers, f"worker-{n}", "--concurrency", "10") for n in range(2)]
    await workers.serving(*pool)

    jobs = await client.enqueue_many(timed_jobs("r", 12, 0.0, "metered"))
    done = await finished(client, jobs, workers)

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    records = executions(workers)
    assert sorted(r.token for r in records) == sorted(f"r{n}" for n in range(12))
    assert {r.pid for r in records} <= {worker.pid for worker in pool}
    starts = sorted(r.start for r in records)
    most = most_starts_in_a_window(starts, 1.0)
    span = starts[-1] - starts[0]
    print(
        f"rate 4/second over 2 processes: most starts in a 1 s window {most}, "
        f"first to last start {span:.3f}s, "
        f"jobs per pid {[sum(r.pid == w.pid for r in records) for w in pool]}, "
        f"starts {[round(s - starts[0], 3) for s in starts]}"
    )
    assert most <= 4, f"{most} starts within one second under a rate of 4/second: {starts}"
    assert most == 4
    # 12 starts at 4 per window need two full windows after the first start (which the window
    # check implies; this is the run's own figure).
    assert span >= 2.0


async def test_pause_is_obeyed_by_another_process_until_resumed(
    client: QueueClient, workers: Workers
) -> None:
    worker = start(workers, "worker")
    await workers.serving(worker)
    # A job of the queue runs in the worker, so the worker serves the queue when it is paused.
    running = await client.enqueue("timed", {"token": "running", "seconds": 1.0}, queue="pausable")

    async def is_processing() -> bool:
        job = await client.get(running.id)
        return job is not None and job.status is JobStatus.PROCESSING

    await workers.until(is_processing, what="the first job to start", timeout=START_TIMEOUT)

    info = await client.pause_queue("pausable")
    assert info.paused
    enqueued_at = time.time()
    held = await client.enqueue_many(timed_jobs("p", 5, 0.0, "pausable"))
    # Due half a second (five of the worker's polls) after the paused queue's jobs: once it has
    # run, the worker has polled, with them due, for at least that long.
    marker = await client.enqueue(
        "timed", {"token": "marker", "seconds": 0.0}, queue="other", delay=0.5
    )
    done = await finished(client, [running, marker], workers)

    # The pause stopped no running job, and started none of the paused queue's.
    assert [job.status for job in done] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    for job in [await client.get(job.id) for job in held]:
        assert job is not None
        assert job.status is JobStatus.QUEUED, job
        assert job.attempts == 0
    recorded = {r.token: r for r in executions(workers)}
    assert sorted(recorded) == ["marker", "running"]
    # The premise: the worker was claiming with the paused queue's jobs due for half a second.
    assert recorded["marker"].start - enqueued_at >= 0.5

    resumed_at = time.time()
    info = await client.resume_queue("pausable")
    assert not info.paused
    done = await finished(client, held, workers)

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    records = {r.token: r for r in executions(workers)}
    assert sorted(records) == sorted(["marker", "running", *(f"p{n}" for n in range(5))])
    after = [records[f"p{n}"].start - resumed_at for n in range(5)]
    print(
        f"pause: held jobs started {[round(a, 3) for a in after]}s after the resume call, "
        f"the marker started {records['marker'].start - enqueued_at:.3f}s after they were enqueued"
    )
    assert min(after) >= 0
    assert {r.pid for r in records.values()} == {worker.pid}
