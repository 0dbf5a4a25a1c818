"""Retention: finished jobs are deleted once old enough, by the workers; tested without waiting,
on a ManualClock."""

from datetime import timedelta

from fastapi_equeue import EQueue, events
from fastapi_equeue.testing import ManualClock


async def main(database_url: str) -> None:
    clock = ManualClock()
    queue = EQueue(
        database_url,
        retention=timedelta(days=7),  # completed and cancelled jobs
        failed_retention=timedelta(days=30),  # failed ones, kept longer to look into
        clock=clock,
    )

    @queue.task
    async def ping() -> str:
        return "pong"

    with queue.events.record(events.JobsPruned) as pruned:
        async with queue:
            job = await queue.client.enqueue("ping", idempotency_key="ping-1")
            await queue.client.wait(job.id, timeout=10)

            clock.advance(timedelta(days=7, hours=1))
            await pruned.wait_for(timeout=10)

            assert await queue.client.get(job.id) is None
            # Its idempotency key is free again.
            again = await queue.client.enqueue("ping", idempotency_key="ping-1")
            assert again.id != job.id
