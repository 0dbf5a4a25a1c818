"""Periodic jobs: ``Schedule`` (what ``EQueue.periodic`` declares), its validation, and when its
ticks fall. Pure: no I/O and no clock of its own; every time is an argument, UTC in and out.

Cron expressions are read by cronsim (five fields; ``L``, ``LW`` and ``#`` allowed), in the
schedule's time zone, the way cronie reads them: a job at a fixed time of day whose time does
not exist on a spring-forward day runs at the first minute after the gap, and one whose time
happens twice on a fall-back day runs at the first of the two. Jobs that fire every so many
minutes or hours run at each real instant that matches, as the clocks show it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel

from fastapi_equeue.config import storable_text
from fastapi_equeue.errors import ConfigurationError, InvalidPayload
from fastapi_equeue.tasks import TaskRegistry

MAX_SCHEDULE_NAME = 200
_SECOND = timedelta(seconds=1)
_STEPS = 10_000
"""Ticks looked at, at most, for one answer: far more than a fold or a gap can hide."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic job as ``EQueue.periodic`` declared it: ``job_type`` with ``payload``, once
    per tick of ``cron`` in ``timezone``, under ``name`` (unique per queue)."""

    name: str
    cron: str
    timezone: str
    job_type: str
    payload: Mapping[str, Any]
    payload_json: str = field(repr=False, compare=False)
    """``payload`` as the JSON text its jobs store."""
    zone: tzinfo = field(init=False, repr=False, compare=False)
    """The time zone that ``timezone`` names."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", check_timezone(self.timezone))

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in UTC."""
        # cronsim walks a fixed time of day in local wall time, where an instant of a
        # fall-back day's second hour reads as its first: ticks before `after` are skipped.
        ticks = CronSim(self.cron, after.astimezone(self.zone))
        for _ in range(_STEPS):
            tick = next(ticks).astimezone(UTC)
            if tick > after:
                return tick
        raise AssertionError(f"no tick of {self.cron!r} after {after}")  # pragma: no cover

    def latest_tick(self, at: datetime) -> datetime | None:
        """The last tick at or before ``at``, in UTC (``None``: none in the last 50 years)."""
        # Ticks fall on whole seconds: searching back from the second after `at` finds `at`.
        start = (at.replace(microsecond=0) + _SECOND).astimezone(self.zone)
        ticks = CronSim(self.cron, start, reverse=True)
        try:
            tick = next(ticks).astimezone(UTC)
            while tick > at:
                tick = next(ticks).astimezone(UTC)
        except StopIteration:
            return None
        # Backwards, a fall-back day's second hour reads as its first, which can pass over
        # the tick wanted: walk forwards from what was found, which cannot.
        for _ in range(_STEPS):
            following = self.next_tick(tick)
            if following > at:
                return tick
            tick = following
        raise AssertionError(f"no tick of {self.cron!r} up to {at}")  # pragma: no cover

    def next_run(self, now: datetime, last_tick: datetime | None) -> datetime:
        """The tick whose job comes next, in UTC: the latest one at or before ``now`` if it is
        after ``last_tick`` (due, not yet enqueued), else the first one after both."""
        due = self.latest_tick(now)
        if last_tick is not None and due is not None and due > last_tick:
            return due
        return self.next_tick(max(now, last_tick) if last_tick is not None else now)


class ScheduleInfo(BaseModel):
    """A periodic job of this queue, and how far it has run."""

    name: str
    cron: str
    timezone: str
    job_type: str
    next_run_at: datetime
    """The tick whose job comes next (UTC); in the past while a due tick waits for a worker."""
    last_run_at: datetime | None
    """The last tick that enqueued a job (UTC); ``None`` before the first."""
    last_job_id: str | None
    """That job's id."""


def declare(
    cron: object,
    job_type: object,
    payload: object,
    *,
    timezone: object,
    name: object,
    registry: TaskRegistry,
    max_payload_bytes: int,
) -> Schedule:
    """A ``Schedule``, once every part of it is checked; else ``ConfigurationError`` naming the
    part. The task must be registered first: its payload model checks the payload."""
    expression = check_cron(cron)
    check_timezone(timezone)
    if not isinstance(job_type, str) or job_type not in registry:
        raise ConfigurationError(
            f"periodic job type {job_type!r} is not a registered task: register the task "
            "(@queue.task) before calling queue.periodic()"
        )
    schedule_name = job_type if name is None else name
    if (
        not isinstance(schedule_name, str)
        or not 1 <= len(schedule_name) <= MAX_SCHEDULE_NAME
        or not storable_text(schedule_name)
    ):
        raise ConfigurationError(
            f"schedule name must be a string of 1 to {MAX_SCHEDULE_NAME} characters, "
            f"got {schedule_name!r}"
        )
    if payload is not None and not isinstance(payload, Mapping):
        raise ConfigurationError(f"schedule {schedule_name!r}: the payload must be a dict")
    task = registry.get(job_type)
    try:
        stored, encoded, size = task.prepare_payload(payload)
    except InvalidPayload as exc:
        raise ConfigurationError(f"schedule {schedule_name!r}: {exc}") from None
    if size > max_payload_bytes:
        raise ConfigurationError(
            f"schedule {schedule_name!r}: the payload is {size} bytes of JSON; "
            f"the limit is {max_payload_bytes}"
        )
    return Schedule(
        name=schedule_name,
        cron=expression,
        timezone=str(timezone),
        job_type=task.name,
        payload=stored,
        payload_json=encoded,
    )


def check_cron(cron: object) -> str:
    """``cron`` with its fields separated by single spaces, if it is a five-field expression
    that fires at least once; else ``ConfigurationError`` saying what is wrong."""
    if not isinstance(cron, str):
        raise ConfigurationError(f"a cron expression must be a string, got {cron!r}")
    fields = cron.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"invalid cron expression {cron!r}: it needs five fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    expression = " ".join(fields)
    try:
        next(CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC)))
    except CronSimError as exc:
        raise ConfigurationError(f"invalid cron expression {cron!r}: {exc}") from None
    except StopIteration:
        raise ConfigurationError(f"cron expression {cron!r} never fires") from None
    return expression


def check_timezone(name: object) -> tzinfo:
    """The time zone of an IANA name (``"Europe/Berlin"``); else ``ConfigurationError``."""
    if not isinstance(name, str):
        raise ConfigurationError(f"timezone must be an IANA time zone name, got {name!r}")
    if name == "UTC":
        return UTC  # cronsim takes the fast path for datetime.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigurationError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None
