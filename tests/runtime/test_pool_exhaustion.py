"""Task code that keeps every connection of the pool busy starves neither the heartbeat nor
the completions: no worker is declared lost, and no job runs twice. Another worker, on a loop
and connections of its own, stands ready to rescue.

The task code's statements are slow on the database's side (statistics over a table of 20,000
waiting jobs), not on the event loop's: the pool is what is starved, not the loop.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from fastapi_equeue import EQueue, JobStatus, events
from tests.runtime.threaded import workers_in_a_thread

POOL_SIZE = 4
STALLED_AFTER = 2.5
HEARTBEAT = 0.2
DEADLINE = 90.0
WAITING = 20_000
IN_FLIGHT = 200


async def test_a_starved_pool_loses_no_worker_and_runs_no_job_twice(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(
        concurrency=10,
        pool_size=POOL_SIZE,
        heartbeat_interval=HEARTBEAT,
        stalled_after=STALLED_AFTER,
    )
    runs: Counter[int] = Counter()
    waits: list[float] = []
    flooded_long = asyncio.Event()
    flood_ended = asyncio.Event()

    @queue.task(retry_delay=0)
    async def flood(n: int) -> int:
        # Far more statements at once than the pool holds: every connection stays busy, and
        # a statement waits for one for longer than stalled_after.
        runs[n] += 1
        started = time.monotonic()
        while not flood_ended.is_set():
            began = time.monotonic()
            await asyncio.gather(*(queue.client.stats() for _ in range(IN_FLIGHT)))
            waits.append(time.monotonic() - began)
            if time.monotonic() - started > 3 * STALLED_AFTER:
                flooded_long.set()
        return n

    @queue.task(retry_delay=0)
    async def quick(n: int) -> int:
        runs[n] += 1
        return n

    with (
        queue.events.record(events.WorkerLost, events.JobRescued) as lost,
        queue.events.record(events.JobCompleted) as completed,
    ):
        async with (
            queue,
            workers_in_a_thread(
                lambda: make_queue(
                    concurrency=1,
                    stalled_after=STALLED_AFTER,
                    heartbeat_interval=HEARTBEAT,
                    queues=["other"],
                )
            ),
        ):
            for start in range(0, WAITING, 5_000):
                await queue.client.enqueue_many(
                    [
                        {"job_type": "quick", "payload": {"n": -1}, "delay": 3600}
                        for _ in range(start, start + 5_000)
                    ]
                )
            floods = await queue.client.enqueue_many(
                [{"job_type": "flood", "payload": {"n": n}} for n in range(5)]
            )
            quicks = await queue.client.enqueue_many(
                [{"job_type": "quick", "payload": {"n": n}} for n in range(100, 150)]
            )
            # Completions land while the pool is starved, which lasts several times
            # stalled_after.
            await completed.wait_count(len(quicks), timeout=DEADLINE)
            await asyncio.wait_for(flooded_long.wait(), DEADLINE)
            flood_ended.set()
            await completed.wait_count(len(quicks) + len(floods), timeout=DEADLINE)
            done = [await queue.client.get(job.id) for job in [*floods, *quicks]]
            assert queue.runtime is not None
            flooded = queue.runtime.worker_id

    print(
        f"\nstarved pool: {len(waits) * IN_FLIGHT} statements of task code, the slowest batch "
        f"{max(waits):.2f} s (stalled_after {STALLED_AFTER} s); workers lost or jobs rescued: "
        f"{len(lost.events)}"
    )
    assert max(waits) > STALLED_AFTER, waits
    assert [job.status for job in done if job] == [JobStatus.COMPLETED] * 55
    assert [job.attempts for job in done if job] == [1] * 55
    assert max(runs[n] for n in range(100, 150)) == 1
    assert max(runs[n] for n in range(5)) == 1
    # The worker whose pool was starved kept its jobs. (The rescuing worker, in a thread of the
    # same process, competes with the flood for the interpreter, not for connections: whether
    # it looked late to the other is not this test's subject.)
    lost_workers = [e.worker_id for e in lost.events if isinstance(e, events.WorkerLost)]
    rescued = [e.job_id for e in lost.events if isinstance(e, events.JobRescued)]
    assert flooded not in lost_workers
    assert rescued == []
