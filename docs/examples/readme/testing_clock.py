from fastapi_equeue import EQueue, JobStatus, events
from fastapi_equeue.testing import ManualClock


async def test_the_reminder_waits_an_hour(database_url: str) -> None:
    clock = ManualClock()
    queue = EQueue(database_url, clock=clock)

    @queue.task(retry_delay=0)
    async def send_reminder() -> None: ...

    async with queue:
        with queue.events.record(events.JobCompleted) as seen:
            job = await queue.client.enqueue("send_reminder", delay=3600)
            clock.advance(3599)
            waiting = await queue.client.get(job.id)
            assert waiting is not None
            assert waiting.status is JobStatus.QUEUED
            clock.advance(2)
            await seen.wait_for(lambda event: event.job_id == job.id, timeout=5)
