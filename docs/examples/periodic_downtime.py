"""After downtime, a schedule runs its latest missed tick once: no burst of the others."""

from datetime import UTC, datetime, timedelta

from fastapi_equeue import EQueue, events
from fastapi_equeue.testing import ManualClock


async def main(database_url: str) -> None:
    clock = ManualClock(datetime(2026, 5, 4, 9, 59, 30, tzinfo=UTC))
    queue = EQueue(database_url, clock=clock)

    @queue.task
    async def sync_prices() -> None:
        return None

    queue.periodic("*/5 * * * *", "sync_prices")  # every five minutes

    with queue.events.record(events.JobEnqueued) as enqueued:
        async with queue:
            clock.advance(timedelta(seconds=30))  # 10:00
            await enqueued.wait_for(timeout=10)

        # Every worker is down for an hour: the ticks from 10:05 to 11:00 pass unseen.
        clock.advance(timedelta(hours=1))

        async with queue:
            await enqueued.wait_count(2, timeout=10)
            page = await queue.client.list(job_type="sync_prices")

    # 10:00, then only 11:00, the latest missed tick: not twelve jobs at once.
    assert [job.scheduled_at for job in page.items] == [
        datetime(2026, 5, 4, 11, 0, tzinfo=UTC),
        datetime(2026, 5, 4, 10, 0, tzinfo=UTC),
    ]
