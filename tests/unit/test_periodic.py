"""Periodic jobs without a database: what ``queue.periodic`` refuses, and when ticks fall (UTC,
named time zones, the days clocks change)."""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from fastapi_equeue import ConfigurationError, EQueue, Schedule
from fastapi_equeue.periodic import check_cron

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    """An ISO time, UTC unless it says otherwise."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def schedule(cron: str, timezone: str = "UTC") -> Schedule:
    return Schedule(
        name="s", cron=cron, timezone=timezone, job_type="t", payload={}, payload_json="{}"
    )


def wake_ups(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    now = start
    while now <= end:
        yield now
        now += step


def enqueued(
    sched: Schedule, start: datetime, end: datetime, step: timedelta = timedelta(minutes=3)
) -> list[datetime]:
    """The ticks a scheduler enqueues, waking every ``step`` from ``start`` to ``end``: as the
    runtime does, the latest tick at or before now, when it is after the last one enqueued."""
    last = sched.latest_tick(start)
    assert last is not None
    ticks = []
    for now in wake_ups(start, end, step):
        tick = sched.latest_tick(now)
        if tick is not None and tick > last:
            ticks.append(tick)
            last = tick
    return ticks


@pytest.fixture
def queue() -> EQueue:
    queue = EQueue("sqlite+aiosqlite:///unused.db")

    @queue.task
    def report(kind: str, pages: int = 1) -> None:
        return None

    @queue.task
    def cleanup() -> None:
        return None

    return queue


class TestValidation:
    @pytest.mark.parametrize(
        ("cron", "says"),
        [
            ("* * * *", "five fields"),
            ("0 * * * * *", "five fields"),
            ("", "five fields"),
            ("61 * * * *", "Bad minute"),
            ("0 25 * * *", "Bad hour"),
            ("0 0 31 2 *", "Bad day-of-month"),
            ("0 0 * 13 *", "Bad month"),
            ("0 0 * * 8", "Bad day-of-week"),
            ("every day", "five fields"),
            ("@daily", "five fields"),
        ],
    )
    def test_a_bad_cron_expression_is_refused_naming_it(
        self, queue: EQueue, cron: str, says: str
    ) -> None:
        with pytest.raises(ConfigurationError, match=says) as raised:
            queue.periodic(cron, "cleanup")
        assert repr(cron) in str(raised.value)
        assert queue.schedules == {}

    def test_a_cron_that_is_not_a_string_is_refused(self, queue: EQueue) -> None:
        with pytest.raises(ConfigurationError, match="must be a string"):
            queue.periodic(5, "cleanup")  # type: ignore[arg-type]

    @pytest.mark.parametrize("timezone", ["Mars/Olympus", "Europe", "", "../etc/passwd", "utc"])
    def test_an_unknown_time_zone_is_refused_naming_it(self, queue: EQueue, timezone: str) -> None:
        with pytest.raises(ConfigurationError, match="unknown timezone") as raised:
            queue.periodic("0 * * * *", "cleanup", timezone=timezone)
        assert repr(timezone) in str(raised.value)

    def test_a_time_zone_that_is_not_a_name_is_refused(self, queue: EQueue) -> None:
        with pytest.raises(ConfigurationError, match="IANA time zone name"):
            queue.periodic("0 * * * *", "cleanup", timezone=UTC)  # type: ignore[arg-type]

    def test_a_job_type_must_be_registered_first(self, queue: EQueue) -> None:
        with pytest.raises(ConfigurationError, match="register the task") as raised:
            queue.periodic("0 * * * *", "send_newsletter")
        assert "'send_newsletter'" in str(raised.value)

    def test_an_invalid_payload_is_refused_naming_the_field(self, queue: EQueue) -> None:
        with pytest.raises(ConfigurationError, match="pages") as raised:
            queue.periodic("0 * * * *", "report", {"kind": "daily", "pages": "many"})
        assert "'report'" in str(raised.value)

    def test_a_missing_argument_is_refused(self, queue: EQueue) -> None:
        with pytest.raises(ConfigurationError, match="kind"):
            queue.periodic("0 * * * *", "report")

    def test_a_payload_over_the_size_limit_is_refused(self) -> None:
        small = EQueue("sqlite+aiosqlite:///unused.db", max_payload_bytes=64)

        @small.task
        def report(kind: str) -> None:
            return None

        with pytest.raises(ConfigurationError, match="the limit is 64"):
            small.periodic("0 * * * *", "report", {"kind": "x" * 100})

    def test_a_second_schedule_of_a_name_is_refused(self, queue: EQueue) -> None:
        queue.periodic("0 * * * *", "cleanup")

        with pytest.raises(ConfigurationError, match="'cleanup' exists already"):
            queue.periodic("30 * * * *", "cleanup")
        queue.periodic("30 * * * *", "cleanup", name="cleanup-half-past")

        assert sorted(queue.schedules) == ["cleanup", "cleanup-half-past"]

    @pytest.mark.parametrize("name", ["", "x" * 201, "nul\x00", 7])
    def test_a_bad_name_is_refused(self, queue: EQueue, name: object) -> None:
        with pytest.raises(ConfigurationError, match="schedule name"):
            queue.periodic("0 * * * *", "cleanup", name=name)  # type: ignore[arg-type]

    def test_a_schedule_describes_itself(self, queue: EQueue) -> None:
        declared = queue.periodic(
            "30  2 * * *", "report", {"kind": "nightly"}, timezone="Europe/Berlin"
        )

        assert declared == Schedule(
            name="report",
            cron="30 2 * * *",
            timezone="Europe/Berlin",
            job_type="report",
            payload={"kind": "nightly"},
            payload_json="",
        )
        assert declared.payload_json == '{"kind":"nightly"}'
        assert queue.schedules == {"report": declared}
        with pytest.raises(AttributeError):
            declared.cron = "* * * * *"  # type: ignore[misc]

    def test_checked_cron_keeps_cronsim_extensions(self) -> None:
        assert check_cron("0 9 L * *") == "0 9 L * *"
        assert check_cron("0 9 * * MON#1") == "0 9 * * MON#1"


class TestTicks:
    def test_latest_and_next_tick_around_a_tick(self) -> None:
        quarter = schedule("*/15 * * * *")

        assert quarter.latest_tick(at("2026-05-04T10:07:00")) == at("2026-05-04T10:00:00")
        assert quarter.next_tick(at("2026-05-04T10:07:00")) == at("2026-05-04T10:15:00")
        # A tick is its own latest, and the next one is after it.
        assert quarter.latest_tick(at("2026-05-04T10:15:00")) == at("2026-05-04T10:15:00")
        assert quarter.next_tick(at("2026-05-04T10:15:00")) == at("2026-05-04T10:30:00")
        assert quarter.latest_tick(at("2026-05-04T10:14:59.999999")) == at("2026-05-04T10:00")
        assert quarter.next_tick(at("2026-05-04T10:14:59.999999")) == at("2026-05-04T10:15")

    def test_ticks_are_utc_whatever_the_input_zone(self) -> None:
        hourly = schedule("0 * * * *")

        tick = hourly.next_tick(datetime(2026, 5, 4, 12, 30, tzinfo=BERLIN))

        assert tick == at("2026-05-04T11:00:00")
        assert tick.tzinfo is UTC

    def test_a_rare_cron_finds_its_latest_tick_years_back(self) -> None:
        leap = schedule("0 0 29 2 *")

        assert leap.latest_tick(at("2027-01-01T00:00:00")) == at("2024-02-29T00:00:00")
        assert leap.next_tick(at("2027-01-01T00:00:00")) == at("2028-02-29T00:00:00")

    def test_next_run_is_the_due_tick_until_it_is_enqueued(self) -> None:
        hourly = schedule("0 * * * *")
        now = at("2026-05-04T10:20:00")

        # Registered now: the last tick is 10:00, the next run 11:00.
        assert hourly.next_run(now, at("2026-05-04T10:00")) == at("2026-05-04T11:00")
        # Last enqueued at 08:00 (the workers were down): 10:00 is due.
        assert hourly.next_run(now, at("2026-05-04T08:00")) == at("2026-05-04T10:00")
        # Never registered: the next tick.
        assert hourly.next_run(now, None) == at("2026-05-04T11:00")
        # Enqueued by a machine whose clock is ahead: after that tick.
        assert hourly.next_run(now, at("2026-05-04T11:00")) == at("2026-05-04T12:00")

    def test_a_new_york_morning_job_follows_local_time_across_the_change(self) -> None:
        weekday_nine = schedule("0 9 * * 1-5", "America/New_York")

        ticks = enqueued(
            weekday_nine, at("2026-03-05T00:00"), at("2026-03-11T00:00"), timedelta(minutes=10)
        )

        # 09:00 EST is 14:00 UTC; from Sunday 8 March, 09:00 EDT is 13:00 UTC. No weekend run.
        assert ticks == [
            at("2026-03-05T14:00"),
            at("2026-03-06T14:00"),
            at("2026-03-09T13:00"),
            at("2026-03-10T13:00"),
        ]
        assert [t.astimezone(NEW_YORK).hour for t in ticks] == [9, 9, 9, 9]


class TestDaylightSaving:
    def test_a_time_skipped_by_spring_forward_runs_once_at_three(self) -> None:
        nightly = schedule("30 2 * * *", "Europe/Berlin")

        ticks = enqueued(nightly, at("2026-03-27T12:00"), at("2026-03-30T12:00"))
        by_minute = enqueued(
            nightly, at("2026-03-28T23:00"), at("2026-03-29T03:00"), timedelta(minutes=1)
        )

        # 2026-03-29 in Berlin goes from 02:00 to 03:00: 02:30 does not exist, and the job runs
        # at 03:00 CEST (01:00 UTC), as cronie does. Once, like every other day.
        assert ticks == [
            at("2026-03-28T01:30"),  # 02:30 CET
            at("2026-03-29T01:00"),  # 03:00 CEST
            at("2026-03-30T00:30"),  # 02:30 CEST
        ]
        assert ticks[1].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
        assert by_minute == [at("2026-03-29T01:00")]

    def test_a_time_repeated_by_fall_back_runs_once_at_the_first(self) -> None:
        nightly = schedule("30 2 * * *", "Europe/Berlin")

        ticks = enqueued(nightly, at("2026-10-23T12:00"), at("2026-10-26T12:00"))
        by_minute = enqueued(
            nightly, at("2026-10-24T23:00"), at("2026-10-25T03:00"), timedelta(minutes=1)
        )

        # 2026-10-25 in Berlin goes from 03:00 back to 02:00: 02:30 happens at 00:30 and at
        # 01:30 UTC. The job runs at the first only.
        assert ticks == [
            at("2026-10-24T00:30"),
            at("2026-10-25T00:30"),
            at("2026-10-26T01:30"),
        ]
        assert by_minute == [at("2026-10-25T00:30")]

    def test_the_repeated_hour_never_brings_the_tick_back(self) -> None:
        nightly = schedule("30 2 * * *", "Europe/Berlin")
        # Inside the second 02:00-03:00 (CET), after the first 02:30 (CEST) ran.
        second_hour = at("2026-10-25T01:45")

        assert nightly.latest_tick(second_hour) == at("2026-10-25T00:30")
        assert nightly.next_tick(second_hour) == at("2026-10-26T01:30")
        assert nightly.next_tick(at("2026-10-25T00:30")) == at("2026-10-26T01:30")

    def test_an_every_quarter_hour_job_runs_at_every_real_quarter(self) -> None:
        quarterly = schedule("*/15 * * * *", "Europe/Berlin")

        spring = enqueued(quarterly, at("2026-03-29T00:00"), at("2026-03-29T02:00"))
        autumn = enqueued(quarterly, at("2026-10-25T00:00"), at("2026-10-25T02:00"))

        # Every 15 minutes of real time, whatever the wall clock does.
        for ticks in (spring, autumn):
            assert len(ticks) == 8
            assert {b - a for a, b in itertools.pairwise(ticks)} == {timedelta(minutes=15)}

    @pytest.mark.parametrize("timezone", ["Europe/Berlin", "America/New_York"])
    @pytest.mark.parametrize("cron", ["30 2 * * *", "0,30 1-3 * * *", "*/20 * * * *"])
    @pytest.mark.parametrize("day", ["2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"])
    def test_latest_and_next_agree_with_every_tick_in_order(
        self, timezone: str, cron: str, day: str
    ) -> None:
        sched = schedule(cron, timezone)
        start = at(f"{day}T00:00") - timedelta(days=2)
        truth = []
        for local in CronSim(cron, start.astimezone(ZoneInfo(timezone))):
            tick = local.astimezone(UTC)
            if tick > start + timedelta(days=4):
                break
            truth.append(tick)

        # Every 7 min 13 s over the two days around the change, on and between ticks.
        now = start + timedelta(days=1)
        while now < start + timedelta(days=3):
            assert sched.latest_tick(now) == max(t for t in truth if t <= now), now
            assert sched.next_tick(now) == min(t for t in truth if t > now), now
            now += timedelta(minutes=7, seconds=13)
        for tick in truth[1:-1]:
            assert sched.latest_tick(tick) == tick
