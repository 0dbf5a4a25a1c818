"""Subscribing to a queue's events: here, collecting the failures of one job type."""

from fastapi_equeue import EQueue, events


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)
    failures: list[str] = []

    @queue.task(max_attempts=1)
    async def charge_card(amount: int) -> None:
        raise RuntimeError(f"card declined for {amount}")

    # async def subscribers run on the event loop, plain def ones in a worker thread. Neither
    # can slow down or break the workers: each has its own delivery task.
    async def on_failed(event: events.JobFailed) -> None:
        if event.job_type == "charge_card":
            failures.append(event.error)

    queue.events.subscribe(on_failed, events.JobFailed)

    async with queue:
        job = await queue.client.enqueue("charge_card", {"amount": 42})
        await queue.client.wait(job.id, timeout=10)

    # Stopping the queue delivers what was still on its way.
    assert failures == ["RuntimeError: card declined for 42"]
