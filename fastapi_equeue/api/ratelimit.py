"""The optional per-client limit on ``POST /jobs``, on the ``limits`` library (moving window).

The window lives in this process's memory: with several processes each enforces it on its own.
"""

import inspect
import math
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from fastapi_equeue.errors import ConfigurationError, RateLimited

RateLimitKey = Callable[[Request], str | Awaitable[str]]
"""Who a request counts against: by default the client's address."""

_NAMESPACE = "equeue-submit"


def client_address(request: Request) -> str:
    """The default key: the address the request came from."""
    return request.client.host if request.client else "unknown"


class SubmitLimiter:
    """At most ``rate`` submissions per key: ``"10/second"``, ``"100 per minute"``, or several
    limits at once, ``"5/second;100/hour"``."""

    def __init__(self, rate: str, key: RateLimitKey | None = None) -> None:
        self._items = _parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._key = key or client_address

    async def check(self, request: Request) -> None:
        """Count one submission; ``RateLimited`` (with ``retry_after``) once over the limit."""
        key = self._key(request)
        if inspect.isawaitable(key):
            key = await key
        key = str(key)
        for item in self._items:
            if not await self._limiter.test(item, _NAMESPACE, key):
                stats = await self._limiter.get_window_stats(item, _NAMESPACE, key)
                raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))
        for item in self._items:
            await self._limiter.hit(item, _NAMESPACE, key)


def _parse(rate: object) -> list[RateLimitItem]:
    message = (
        "rate_limit must look like '10/second', '100 per minute' or '5/second;100/hour' "
        f"(amounts of at least 1), got {rate!r}"
    )
    if not isinstance(rate, str) or not rate.strip():
        raise ConfigurationError(message)
    try:
        items = parse_many(rate)
    except ValueError:
        raise ConfigurationError(message) from None
    if not items or any(item.amount < 1 for item in items):
        raise ConfigurationError(message)
    return items
