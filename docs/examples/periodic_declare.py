"""A periodic job: enqueued once per tick of its cron, whatever the number of workers."""

from datetime import UTC, datetime, timedelta

from fastapi_equeue import EQueue, events
from fastapi_equeue.testing import ManualClock


async def main(database_url: str) -> None:
    # A test clock, so that the hour passes at once: 09:59:30 UTC.
    clock = ManualClock(datetime(2026, 5, 4, 9, 59, 30, tzinfo=UTC))
    queue = EQueue(database_url, clock=clock)

    @queue.task(queue="reports", max_attempts=3)
    async def send_report(kind: str) -> str:
        return f"{kind} report sent"

    # Every hour, on the hour. The task is registered first: its payload is checked here.
    schedule = queue.periodic("0 * * * *", "send_report", {"kind": "hourly"})
    assert schedule.name == "send_report"

    with queue.events.record(events.JobCompleted) as done:
        async with queue:
            clock.advance(timedelta(seconds=30))  # 10:00, a tick
            report = await done.wait_for(timeout=10)

            job = await queue.client.get(report.job_id)
            assert job is not None
            assert job.result == "hourly report sent"
            assert job.queue == "reports"  # an ordinary job of its task's queue
            assert job.scheduled_at == datetime(2026, 5, 4, 10, 0, tzinfo=UTC)  # its tick

            (info,) = await queue.client.schedules()
            assert info.last_run_at == job.scheduled_at
            assert info.last_job_id == job.id
            assert info.next_run_at == datetime(2026, 5, 4, 11, 0, tzinfo=UTC)
