"""Queues as data: their names, their limits, and ``QueueInfo``, what a queue looks like.

A queue comes into being by use: enqueueing into a name creates it, and so does pausing or
configuring one. Its settings (paused, concurrency, rate) live in the database, and every
worker's claim obeys them.
"""

import enum
import re
from dataclasses import dataclass

from pydantic import BaseModel

from fastapi_equeue.config import check_queue_name
from fastapi_equeue.jobs import JobStatus

__all__ = [
    "KEEP",
    "MAX_CONCURRENCY",
    "PERIODS",
    "RATE_PATTERN",
    "Keep",
    "QueueInfo",
    "Rate",
    "check_concurrency",
    "check_queue_name",
]

PERIODS = {"second": 1, "minute": 60, "hour": 3600}
"""The periods a rate may be written in, in seconds."""
MAX_RATE = 1_000_000
"""The most starts a rate may allow per period."""


class Keep(enum.Enum):
    """The type of ``KEEP``."""

    KEEP = "keep"


KEEP = Keep.KEEP
"""A setting left as it is (``configure_queue``'s default for a keyword not given)."""

MAX_CONCURRENCY = 2**31 - 1
RATE_PATTERN = r"^\s*0*([1-9][0-9]{0,5}|1000000)\s*/\s*(second|minute|hour)\s*$"
"""What ``Rate.parse`` accepts, as a regular expression (for the REST API's schema)."""
_RATE = re.compile(RATE_PATTERN)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` jobs started per ``period`` seconds, over every worker."""

    limit: int
    period: int

    @classmethod
    def parse(cls, text: object) -> "Rate":
        """``"N/second"``, ``"N/minute"`` or ``"N/hour"``, N from 1; else ``ValueError``."""
        match = _RATE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"a rate is written 'N/second', 'N/minute' or 'N/hour' with N from 1 to "
                f"{MAX_RATE}, got {_shown(text)}"
            )
        return cls(int(match[1]), PERIODS[match[2]])

    def __str__(self) -> str:
        unit = next(name for name, seconds in PERIODS.items() if seconds == self.period)
        return f"{self.limit}/{unit}"


def check_concurrency(value: object) -> int:
    """``value`` if it is a usable concurrency limit (an integer from 1), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be an integer of at least 1, got {_shown(value)}")
    return value


class QueueInfo(BaseModel):
    """A queue: its settings, and how many of its jobs are in each status."""

    name: str
    paused: bool
    """A paused queue accepts jobs and starts none."""
    concurrency: int | None
    """The most of its jobs processing at once over every worker; ``None``: no limit."""
    rate: str | None
    """The most of its jobs started per period over every worker (``"10/second"``)."""
    counts: dict[JobStatus, int]
    """Its jobs per status, every status present."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
