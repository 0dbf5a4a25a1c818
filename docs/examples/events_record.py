"""Waiting in a test for what the workers did, from their events: no polling, no sleeps."""

from fastapi_equeue import EQueue, events


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)

    @queue.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with queue:
        with queue.events.record(events.JobCompleted) as seen:
            job = await queue.client.enqueue("add", {"a": 1, "b": 2})
            done = await seen.wait_for(lambda e: e.job_id == job.id, timeout=10)

        assert done.attempt == 1
        assert (await queue.client.get(job.id)).result == 3  # type: ignore[union-attr]
