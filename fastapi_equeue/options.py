"""The enqueue options, each defined once: its check, its place in the REST body, its default.

``enqueue``'s keywords, ``enqueue_many``'s item keys and ``POST /jobs``'s body fields are the
same names; every one is checked by the same function here, whichever way it came, and its
schema in the REST API is built from the same bounds. A new option is one entry in
``OPTIONS``, one field of ``EnqueueOptions`` and one keyword of ``enqueue`` (a test holds the
three together), then its column.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from pydantic import AwareDatetime, Field

from fastapi_equeue.config import (
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY,
    MAX_DEPENDENCIES,
    MAX_IDEMPOTENCY_KEY,
    MAX_PRIORITY,
    MAX_QUEUE_NAME,
    check_queue_name,
    storable_text,
)
from fastapi_equeue.errors import InvalidOption
from fastapi_equeue.jobs import Job, parse_job_id

# Every stored time must read back as a Python datetime, in every time zone.
EARLIEST_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RUN_AT = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Option:
    """One enqueue option: how a value is checked (returning it as stored), and its REST schema."""

    check: Callable[[object], Any]
    """The value as it will be stored, or ``ValueError`` saying what is wrong with it."""
    schema: tuple[Any, Any]
    """The field of ``POST /jobs``'s body: its type and bounds, for OpenAPI."""
    from_json: Callable[[object], object] = lambda value: value
    """The value as it arrives in JSON turned into what ``check`` takes (``run_at``: text)."""


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """What a caller may say about one job besides its type and payload; ``None``: the task's."""

    queue: str | None = None
    priority: int | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    depends_on: Sequence[str | int | Job] | None = None
    """Jobs (ids, or ``Job`` objects) this one waits for; in ``enqueue_many``, also the index
    of an earlier item of the same batch. Checked, it is a tuple of ids and indexes."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], *, json: bool = False) -> Self:
        """The options named in ``values`` (an ``enqueue_many`` item, a REST body); their values
        are checked by ``checked``, which every enqueue calls once.

        Raises:
            InvalidOption: an unknown name, or (from JSON) a value of the wrong kind; it names
                the option.
        """
        unknown = sorted(set(values) - set(OPTIONS))
        if unknown:
            name = unknown[0]
            # The name goes back in the error: shown as text only if any JSON can carry it.
            if len(name) > 100 or not storable_text(name):
                name = repr(name)[:100]
            raise InvalidOption(name, "is not an enqueue option")
        if json:
            values = {name: OPTIONS[name].from_json(value) for name, value in values.items()}
        return cls(**values)  # type: ignore[arg-type]

    @property
    def delay_seconds(self) -> float:
        """``delay`` in seconds; 0 when not given."""
        delay = self.delay
        return delay.total_seconds() if isinstance(delay, timedelta) else float(delay or 0.0)

    def checked(self) -> Self:
        """These options with every value checked and normalised (``delay`` in seconds).

        Raises:
            InvalidOption: the first value its check refuses, naming it.
        """
        changes = {}
        for name, option in OPTIONS.items():
            value = getattr(self, name)
            if value is None:
                continue
            try:
                changes[name] = option.check(value)
            except ValueError as exc:
                raise InvalidOption(name, str(exc)) from None
        # Most jobs name no option: nothing to copy.
        return replace(self, **changes) if changes else self


def _queue(value: object) -> str:
    return check_queue_name(value)


def _priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise ValueError(f"must be an integer in -{MAX_PRIORITY}..{MAX_PRIORITY}")
    return value


def _delay(value: object) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_DELAY
    ):
        raise ValueError("must be seconds (or a timedelta) from 0 to ten years")
    return float(value)


def _run_at(value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be a timezone-aware datetime")
    try:
        in_range = EARLIEST_RUN_AT <= value <= LATEST_RUN_AT
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValueError("must be between 1970 and 9000 (UTC)")
    # In UTC: some offsets Python accepts (over 15:59) are beyond what PostgreSQL takes.
    return value.astimezone(UTC)


def _run_at_from_json(value: object) -> object:
    # A bare number would be read as a Unix time: almost certainly a mistake in an API.
    if not isinstance(value, str):
        raise InvalidOption("run_at", "must be an ISO 8601 date-time with a timezone")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidOption("run_at", "must be an ISO 8601 date-time with a timezone") from None


def _max_attempts(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_ATTEMPTS_LIMIT
    ):
        raise ValueError(f"must be an integer in 1..{MAX_ATTEMPTS_LIMIT}")
    return value


def _idempotency_key(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_IDEMPOTENCY_KEY
        or not storable_text(value)
    ):
        raise ValueError(
            f"must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} chars, in UTF-8 and "
            "without NUL"
        )
    return value


def _depends_on(value: object) -> tuple[str | int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise ValueError("must be a list of job ids")  # noqa: TRY004 - every check's contract
    if len(value) > MAX_DEPENDENCIES:
        raise ValueError(f"may name at most {MAX_DEPENDENCIES} jobs")
    checked: dict[str | int, None] = {}  # ordered, without repeats
    for item in value:
        if isinstance(item, Job):
            item = item.id
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            checked[item] = None
            continue
        job_id = parse_job_id(item)
        if job_id is None:
            raise ValueError(f"{str(item)[:100]!r} is not a job id")
        checked[job_id] = None
    return tuple(checked)


def _depends_on_from_json(value: object) -> object:
    # Over HTTP a dependency is a job's id: a batch index means nothing to a single job.
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidOption("depends_on", "must be a list of job ids")
    return value


OPTIONS: dict[str, Option] = {
    "queue": Option(_queue, (str | None, Field(None, min_length=1, max_length=MAX_QUEUE_NAME))),
    "priority": Option(
        _priority, (int | None, Field(None, ge=-MAX_PRIORITY, le=MAX_PRIORITY, strict=True))
    ),
    "delay": Option(
        _delay, (float | None, Field(None, ge=0, le=MAX_DELAY, allow_inf_nan=False, strict=True))
    ),
    "run_at": Option(_run_at, (AwareDatetime | None, Field(None)), from_json=_run_at_from_json),
    "max_attempts": Option(
        _max_attempts, (int | None, Field(None, ge=1, le=MAX_ATTEMPTS_LIMIT, strict=True))
    ),
    "idempotency_key": Option(
        _idempotency_key, (str | None, Field(None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY))
    ),
    "depends_on": Option(
        _depends_on,
        (list[str] | None, Field(None, max_length=MAX_DEPENDENCIES)),
        from_json=_depends_on_from_json,
    ),
}
"""Every enqueue option by name, in the order the REST body documents them."""
