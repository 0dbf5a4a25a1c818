"""The dashboard of one app: its templates, and what it reads through a time budget.

Counting jobs per queue and status, or per minute over the last hour, reads a range of the
table that grows with it. A page waits for such a read for ``BUDGET`` at most: a cheap read is
done for every page and always makes it; a slow one (a big table) keeps running behind, the
page shows the last result with its age (or says it is counting, and looks again shortly), and
that result is then kept for ten times as long as it took to read (one to thirty seconds).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import HTTPConnection

from fastapi_equeue.api.dependencies import get_equeue
from fastapi_equeue.client import QueueClient
from fastapi_equeue.insight import ThroughputPoint
from fastapi_equeue.queues import QueueInfo

if TYPE_CHECKING:
    from fastapi_equeue.queue import EQueue

T = TypeVar("T")

BUDGET = 0.15
"""Seconds a page waits at most for a count."""
CHEAP = 0.05
"""A read that took less than this many seconds is done again for every page."""
KEEP_FACTOR = 10
KEEP_AT_MOST = 30.0
KEEP_AT_LEAST = 1.0
CHART_MINUTES = 60


class Cached(Generic[T]):
    """A value read again for each reader while reading is cheap; once it is slow, kept a while
    and read again behind the readers' backs."""

    def __init__(self, load: Callable[[], Awaitable[T]]) -> None:
        self._load = load
        self._value: T | None = None
        self._loaded_at = 0.0
        self._keep = 0.0
        self._loading: asyncio.Task[None] | None = None

    async def get(self, budget: float = BUDGET) -> tuple[T | None, float]:
        """The value and its age in seconds, after waiting at most ``budget`` seconds for a
        fresh one; ``None`` while the first read is still running.

        Raises:
            whatever the read raised, when there is no earlier value to show.
        """
        if self._value is not None and time.monotonic() - self._loaded_at < self._keep:
            return self._value, time.monotonic() - self._loaded_at
        loading = self._loading
        if loading is None:
            loading = self._loading = asyncio.create_task(self._reload(), name="equeue-count")
            loading.add_done_callback(self._done)
        await asyncio.wait({loading}, timeout=budget)
        if loading.done() and not loading.cancelled() and self._value is None:
            error = loading.exception()
            if error is not None:
                raise error
        return self._value, time.monotonic() - self._loaded_at

    def forget(self) -> None:
        """Read afresh for the next reader (after an action changed what it counts)."""
        self._keep = 0.0

    async def _reload(self) -> None:
        started = time.monotonic()
        value = await self._load()
        self._value, self._loaded_at = value, time.monotonic()
        took = self._loaded_at - started
        keep = min(max(took * KEEP_FACTOR, KEEP_AT_LEAST), KEEP_AT_MOST)
        self._keep = 0.0 if took < CHEAP else keep

    def _done(self, task: "asyncio.Task[None]") -> None:
        self._loading = None
        if not task.cancelled():
            task.exception()  # retrieved: a failed read is the next reader's to report


class Dashboard:
    """What the dashboard keeps for one app and its queue."""

    def __init__(self, queue: "EQueue") -> None:
        self.queue = queue
        self.templates = Environment(
            loader=PackageLoader("fastapi_equeue.dashboard", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.counts: Cached[list[QueueInfo]] = Cached(lambda: self.client.queues())
        self.throughput: Cached[list[ThroughputPoint]] = Cached(
            lambda: self.client.throughput(CHART_MINUTES)
        )

    @property
    def client(self) -> QueueClient:
        """The queue's client (the queue is started while its app serves)."""
        return self.queue.client

    @property
    def database_url(self) -> str:
        """Never shown: pages replace it wherever a value holds it."""
        return self.queue.config.database_url


async def get_dashboard(connection: HTTPConnection) -> Dashboard:
    """The dashboard of the app serving this request, made on first use."""
    queue = await get_equeue(connection)
    state = connection.app.state
    dashboard: Dashboard | None = getattr(state, "equeue_dashboard", None)
    if dashboard is None or dashboard.queue is not queue:
        dashboard = Dashboard(queue)
        state.equeue_dashboard = dashboard
    return dashboard
