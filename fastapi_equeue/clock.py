"""Where the runtime reads the time: one injectable clock instead of ad-hoc ``time`` calls."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time for stored timestamps (SQLite) and error records."""

    def time(self) -> float:
        """Seconds since the epoch, UTC."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""


@dataclass(frozen=True, slots=True)
class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Seconds since the epoch, UTC."""
        return time.time()

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return datetime.now(UTC)
