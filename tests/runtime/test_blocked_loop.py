"""A task that blocks the event loop: the heartbeat goes on from a thread, within a bound.

A second worker runs on an event loop of its own in another thread, rescuing what stalls
while the first worker's loop is blocked. It takes jobs only from the default queue; the
tasks under test run on the "hogs" queue, which only the first worker serves.

PostgreSQL only: on SQLite a loop blocked while one of its own write transactions is open (a
claim, say) keeps the file's write lock, so no other writer, the heartbeat thread included, gets
through until the loop comes back (see docs/reliability.md).
"""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from fastapi_equeue import EQueue, JobStatus, events
from fastapi_equeue.runtime.heartbeat import BLOCKED_LIMIT_FACTOR
from tests.runtime.threaded import workers_in_a_thread

pytestmark = pytest.mark.postgres_only

HEARTBEAT = 0.1
STALLED_AFTER = 0.6
DEADLINE = 30.0


def rescuer(make_queue: Callable[..., EQueue]) -> AbstractAsyncContextManager[EQueue]:
    """Workers of the default queue only, rescuing from a loop of their own."""
    return workers_in_a_thread(
        lambda: make_queue(
            concurrency=1,
            heartbeat_interval=HEARTBEAT,
            stalled_after=STALLED_AFTER,
            queues=["default"],
        )
    )


class Hogs:
    """A queue whose ``hog`` blocks the loop on its first run, and whose ``nap`` awaits."""

    def __init__(self, make_queue: Callable[..., EQueue], block: float) -> None:
        self.runs: Counter[str] = Counter()
        self.hog_began = 0.0
        self.queue = make_queue(
            concurrency=4,
            heartbeat_interval=HEARTBEAT,
            stalled_after=STALLED_AFTER,
            queues=["hogs"],
        )

        @self.queue.task(queue="hogs", retry_delay=0)
        async def hog() -> int:
            self.runs["hog"] += 1
            if self.runs["hog"] == 1:
                self.hog_began = time.time()
                time.sleep(block)  # noqa: ASYNC251 - the point: a task that blocks the loop
            return self.runs["hog"]

        self.napping = asyncio.Semaphore(0)

        @self.queue.task(queue="hogs", retry_delay=0)
        async def nap(n: int) -> int:
            self.runs[f"nap-{n}"] += 1
            self.napping.release()
            await asyncio.sleep(1.0)
            return n

    async def naps_running(self, count: int) -> None:
        async with asyncio.timeout(DEADLINE):
            for _ in range(count):
                await self.napping.acquire()


async def test_a_blocked_loop_keeps_its_jobs(make_queue: Callable[..., EQueue]) -> None:
    hogs = Hogs(make_queue, block=5 * STALLED_AFTER)

    async with hogs.queue, rescuer(make_queue) as other:
        with other.events.record(events.JobRescued, events.WorkerLost) as rescues:
            naps = await hogs.queue.client.enqueue_many(
                [{"job_type": "nap", "payload": {"n": n}} for n in range(3)]
            )
            await hogs.naps_running(3)
            hog = await hogs.queue.client.enqueue("hog")  # blocks this loop for 3 s
            finished = [await hogs.queue.client.wait(j.id, timeout=DEADLINE) for j in [hog, *naps]]

    assert [job.status for job in finished] == [JobStatus.COMPLETED] * 4
    assert [job.attempts for job in finished] == [1] * 4
    assert max(hogs.runs.values()) == 1, hogs.runs
    assert rescues.events == []


async def test_a_loop_that_never_comes_back_is_given_up(
    make_queue: Callable[..., EQueue],
) -> None:
    limit = BLOCKED_LIMIT_FACTOR * STALLED_AFTER
    # Past the bound, and past a rescue after it, with room for a slow machine: a rescue
    # later than the end of the block would find the worker alive again.
    block = limit + 10 * STALLED_AFTER
    hogs = Hogs(make_queue, block=block)

    async with hogs.queue, rescuer(make_queue) as other:
        with other.events.record(events.JobRescued) as rescues:
            hog = await hogs.queue.client.enqueue("hog")
            done = await hogs.queue.client.wait(hog.id, timeout=DEADLINE)
            assert hogs.queue.runtime is not None
            await hogs.queue.runtime.idle()
            again = await hogs.queue.client.get(hog.id)

    # Taken back once the bound had passed, and run again: the first, late outcome was
    # fenced out, and the job's one final state stayed as the second attempt wrote it.
    [rescued] = rescues.events
    rescued_after = rescued.at.timestamp() - hogs.hog_began
    print(
        f"\nloop blocked for {block:.1f} s (bound {limit:.1f} s): "
        f"rescued after {rescued_after:.1f} s"
    )
    assert limit < rescued_after < block, rescued_after
    assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 2, 2)
    assert again == done
