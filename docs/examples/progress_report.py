"""A long job reports its progress; anyone can read it while the job runs."""

import asyncio

from fastapi_equeue import EQueue, JobContext, JobStatus, events


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)
    go_on = asyncio.Event()

    @queue.task
    async def import_rows(rows: int, ctx: JobContext) -> int:
        for done in range(1, rows + 1):
            ...  # import one row
            await ctx.progress(done / rows, f"{done} of {rows} rows")
            if done == rows // 2:
                await go_on.wait()  # (here, to look at the job halfway)
        return rows

    async with queue:
        with queue.events.record(events.JobProgress) as stored:
            job = await queue.client.enqueue("import_rows", {"rows": 10})
            await stored.wait_for(lambda event: event.fraction == 0.5, timeout=10)

        running = await queue.client.get(job.id)  # or GET /jobs/{id}
        assert running is not None
        assert running.status is JobStatus.PROCESSING
        assert running.progress is not None
        assert running.progress.message == "5 of 10 rows"

        go_on.set()
        done = await queue.client.wait(job.id, timeout=10)

    assert done.progress is not None
    assert (done.progress.fraction, done.progress.message) == (1.0, "10 of 10 rows")
