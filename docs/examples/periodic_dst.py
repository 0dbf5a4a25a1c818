"""A daily job in a time zone with daylight saving time: once a day, even when the clocks change."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi_equeue import EQueue, events
from fastapi_equeue.testing import ManualClock

BERLIN = ZoneInfo("Europe/Berlin")


async def main(database_url: str) -> None:
    # 25 October 2026, 02:29:30 in Berlin, summer time (00:29:30 UTC): at 03:00 the clocks go
    # back to 02:00, and 02:30 comes twice, at 00:30 and at 01:30 UTC.
    clock = ManualClock(datetime(2026, 10, 25, 0, 29, 30, tzinfo=UTC))
    queue = EQueue(database_url, clock=clock)

    @queue.task
    async def backup() -> None:
        return None

    nightly = queue.periodic("30 2 * * *", "backup", timezone="Europe/Berlin")

    with queue.events.record(events.JobEnqueued) as enqueued:
        async with queue:
            clock.advance(timedelta(seconds=30))
            first = await enqueued.wait_for(timeout=10)
            assert first.scheduled_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)

            # The next run is tomorrow's 02:30 (winter time), not the second 02:30 of tonight.
            (info,) = await queue.client.schedules()
            assert info.next_run_at == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)

    # 29 March 2026: at 02:00 the clocks go forward to 03:00, and there is no 02:30. The job
    # runs once that day, at 03:00 (as cron does).
    spring = nightly.next_tick(datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN))
    assert spring.astimezone(BERLIN) == datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN)
    assert nightly.next_tick(spring).astimezone(BERLIN) == datetime(
        2026, 3, 30, 2, 30, tzinfo=BERLIN
    )
