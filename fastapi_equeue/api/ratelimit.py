"""The optional per-client limit on ``POST /jobs``, on the ``limits`` library (moving window).

The window lives in this process's memory: with several processes each enforces it on its own.
"""

import inspect
import math
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from limits import parse
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
    """``rate`` submissions (``"10/second"``, ``"100 per minute"``...) per key."""

    def __init__(self, rate: str, key: RateLimitKey | None = None) -> None:
        try:
            self._item = parse(rate)
        except ValueError:
            raise ConfigurationError(
                f"rate_limit must look like '10/second' or '100 per minute', got {rate!r}"
            ) from None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._key = key or client_address

    async def check(self, request: Request) -> None:
        """Count one submission; ``RateLimited`` (with ``retry_after``) once over the limit."""
        key = self._key(request)
        if inspect.isawaitable(key):
            key = await key
        if await self._limiter.hit(self._item, _NAMESPACE, str(key)):
            return
        stats = await self._limiter.get_window_stats(self._item, _NAMESPACE, str(key))
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))
