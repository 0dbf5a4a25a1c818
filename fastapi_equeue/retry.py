"""Retry delay policies: how long to wait before the next attempt. Pure functions of the attempt."""

import math
import random
from collections.abc import Callable

from fastapi_equeue.config import MAX_DELAY

RetryDelay = float | int | Callable[[int], float] | None
"""Fixed seconds, a callable ``attempt -> seconds``, or ``None`` for exponential backoff."""

BACKOFF_BASE = 1.0
BACKOFF_CAP = 3600.0


def exponential_backoff(attempt: int) -> float:
    """``2 ** (attempt - 1)`` seconds capped at an hour, with +/- 25 % jitter.

    Jitter spreads the retries of jobs that failed together (say, on one outage) so they do not
    all come back at the same instant.
    """
    base = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(max(attempt - 1, 0), 32))
    return base * random.uniform(0.75, 1.25)


def delay_for(policy: RetryDelay, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), never negative."""
    if policy is None:
        return exponential_backoff(attempt)
    seconds = float(policy(attempt)) if callable(policy) else float(policy)
    if not math.isfinite(seconds):
        return MAX_DELAY if seconds > 0 else 0.0
    return min(max(0.0, seconds), MAX_DELAY)
