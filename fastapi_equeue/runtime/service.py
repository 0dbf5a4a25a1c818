"""Running the runtime's background loops: named tasks, jittered intervals, errors logged."""

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


async def every(
    interval: float,
    step: Callable[[], Awaitable[None]],
    *,
    what: str,
    stop: asyncio.Event,
) -> None:
    """Run ``step`` every ``interval`` seconds (+/- 10 %) until ``stop`` is set.

    A failing step is logged and retried at the next tick; cancellation is never swallowed.
    """
    failures = 0
    while not stop.is_set():
        try:
            await step()
            failures = 0
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 10 == 0:
                logger.warning("%s failed (%s: %s)", what, type(exc).__name__, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval * random.uniform(0.9, 1.1))


def log_crash(task: asyncio.Task[None]) -> None:
    """Done-callback for a background task: a loop that ends by an exception must not go unseen."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("background task %s crashed", task.get_name(), exc_info=exc)
