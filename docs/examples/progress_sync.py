"""Progress from a plain ``def`` task, which runs in a worker thread, and the ``JobProgress``
events of what was stored."""

from fastapi_equeue import EQueue, JobContext, events


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)

    @queue.task
    def resize_images(count: int, ctx: JobContext) -> int:
        for done in range(1, count + 1):
            ...  # resize one image (blocking work is fine in a def task)
            ctx.progress(done / count)  # no await in a def task
        return count

    async with queue:
        with queue.events.record(events.JobProgress) as stored:
            job = await queue.client.enqueue("resize_images", {"count": 500})
            await queue.client.wait(job.id, timeout=10)

    # 500 reports in a blink: the first and the last are stored, at most one a second between.
    fractions = [event.fraction for event in stored.events]
    assert fractions[0] == 1 / 500
    assert fractions[-1] == 1.0
    assert len(fractions) <= 3
