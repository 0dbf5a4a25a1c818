"""Limits that hold over every worker: at most 2 reports at once, at most 5 started a second."""

import asyncio

from fastapi_equeue import EQueue, InvalidOption


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)
    running = 0
    most = 0

    @queue.task(queue="reports")
    async def build_report(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)  # the work
        running -= 1
        return n

    async with queue:
        client = queue.client
        info = await client.configure_queue("reports", concurrency=2, rate="5/second")
        assert (info.concurrency, info.rate) == (2, "5/second")

        jobs = await client.enqueue_many(
            [{"job_type": "build_report", "payload": {"n": n}} for n in range(6)]
        )
        for job in jobs:
            await client.wait(job.id, timeout=10)
        assert most <= 2

        # A keyword left out keeps its value; None removes a limit.
        info = await client.configure_queue("reports", rate=None)
        assert (info.concurrency, info.rate) == (2, None)

        # Bad input changes nothing and says which field was wrong.
        refused = None
        try:
            await client.configure_queue("reports", concurrency=0)
        except InvalidOption as exc:
            refused = exc.field
        assert refused == "concurrency"
        assert (await client.queues())[0].concurrency == 2
