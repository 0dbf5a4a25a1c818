"""What the dashboard reads, through the client: capped counts, completions per minute, the
worker processes, and what waits to run."""

from fastapi_equeue import EQueue, events


async def main(database_url: str) -> None:
    queue = EQueue(database_url, concurrency=2, poll_interval=0.1)

    @queue.task(max_attempts=1)
    async def import_row(row: int) -> int:
        if row % 4 == 0:
            raise ValueError(f"row {row} is malformed")
        return row

    async with queue:
        client = queue.client
        with queue.events.record(events.JobCompleted, events.JobFailed) as ended:
            for row in range(1, 9):
                await client.enqueue("import_row", {"row": row})
            await ended.wait_count(8, timeout=10)

        failed = await client.count(status="failed")  # counts no further than cap
        many = await client.count(cap=5)
        last_hour = await client.throughput(60)  # one point per minute, oldest first
        (worker,) = await client.workers()
        await client.pause_queue("exports")
        await client.enqueue("import_row", {"row": 9}, queue="exports")
        backlog = await client.backlog()  # read from the claim's index alone: cheap on any table

    assert failed == 2  # rows 4 and 8
    assert many == 5  # "5 or more": a cap keeps a count cheap on a big table
    assert len(last_hour) == 60
    assert sum(p.completed for p in last_hour) == 6
    assert sum(p.failed for p in last_hour) == 2
    assert worker.alive
    assert worker.concurrency == 2
    (exports,) = backlog.queues  # the default queue is empty and has no settings: not listed
    assert exports.paused
    assert exports.backlog == 1
    assert exports.oldest_age is not None  # seconds the oldest due job has waited
    assert backlog.workers == 1
