"""Prometheus metrics of one ``EQueue``, served at ``GET /jobs/metrics``.

Counters and histograms follow the queue's events (a subscriber like the lifecycle log; the
claim and completion paths never touch a metric), so they count what happened in this process:
every process is its own scrape target. Gauges are read from the database when a scrape asks,
through one cheap statement (``metrics_snapshot``), kept for a few seconds, and are the same
from every process. Each ``EQueue`` has a ``CollectorRegistry`` of its own: two queues in one
process never share a metric.

``prometheus_client`` is optional (``pip install fastapi-equeue[metrics]``) and imported only
here, when the metrics are built; without it ``build`` returns ``None`` and the route answers 501.

Example:
    >>> body, content_type = await queue.metrics.render()  # what GET /jobs/metrics serves
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi_equeue import events
from fastapi_equeue.backend import MetricsSnapshot
from fastapi_equeue.clock import Clock

INSTALL_HINT = "Prometheus metrics need prometheus_client: install fastapi-equeue[metrics]"
"""Why ``GET /jobs/metrics`` answers 501 when ``prometheus_client`` cannot be imported."""

SNAPSHOT_TTL = 5.0
"""Seconds a scrape's database snapshot serves the scrapes that follow it."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                    600, 1800, 3600)  # fmt: skip
"""Histogram buckets (seconds) of an attempt's run time."""

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 21600,
                86400)  # fmt: skip
"""Histogram buckets (seconds) of a job's wait between becoming due and starting."""

Snapshot = Callable[[], Awaitable[MetricsSnapshot]]

_SUBSCRIBED = (
    events.JobEnqueued,
    events.JobStarted,
    events.AttemptEnded,
    events.JobCancelled,
    events.JobRequeued,
    events.JobRescued,
)


def build(bus: events.EventBus, clock: Clock, snapshot: Snapshot) -> "QueueMetrics | None":
    """The metrics of the queue whose events ``bus`` carries, subscribed from now on; ``None``
    when ``prometheus_client`` cannot be imported."""
    try:
        import prometheus_client  # noqa: F401  (optional: only to know it is there)
    except ImportError:
        return None
    return QueueMetrics(bus, clock, snapshot)


def outcome(event: events.Event) -> str | None:
    """The ``outcome`` label ``event`` counts under in ``equeue_jobs_finished_total``
    (``None``: it does not count).

    Each attempt that ends counts once: completed, retrying (another is scheduled), failed (none
    is left), cancelled (also a waiting job cancelled by this process), requeued (shutdown or a
    lost claim put it back without counting the attempt) or rescued (this process took it back
    from a silent worker, whatever status that gave it). A manual retry and an outcome
    discarded because the job was rescued meanwhile do not count.
    """
    match event:
        case events.JobCompleted():
            return "completed"
        case events.JobRetrying():
            return "retrying"
        case events.JobFailed():
            return "failed"
        case events.JobCancelled():
            return "cancelled"
        case events.JobRequeued(reason="shutdown" | "not_received"):
            return "requeued"
        case events.JobRescued():
            return "rescued"
    return None


class QueueMetrics:
    """One queue's metrics: its registry, the event subscriber that feeds the counters and
    histograms, and the gauges read from the database at scrape time."""

    def __init__(
        self,
        bus: events.EventBus,
        clock: Clock,
        snapshot: Snapshot,
        *,
        snapshot_ttl: float = SNAPSHOT_TTL,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        """This queue's registry, for a host that serves it in its own exposition."""
        job = ["queue", "job_type"]
        registry = self.registry
        self._enqueued = Counter(
            "equeue_jobs_enqueued", "Jobs enqueued by this process.", job, registry=registry
        )
        self._finished = Counter(
            "equeue_jobs_finished",
            "Attempts that ended in this process, by outcome.",
            [*job, "outcome"],
            registry=registry,
        )
        self._duration = Histogram(
            "equeue_job_duration_seconds",
            "How long an attempt of this process ran.",
            job,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._wait = Histogram(
            "equeue_job_wait_seconds",
            "How long a job started by this process waited after it was due.",
            job,
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self._backlog = Gauge(
            "equeue_queue_backlog",
            "Queued and retrying jobs that could run (not blocked on dependencies).",
            ["queue"],
            registry=registry,
        )
        self._oldest = Gauge(
            "equeue_queue_oldest_job_age_seconds",
            "How long the queue's oldest due job has waited (0: none is due).",
            ["queue"],
            registry=registry,
        )
        self._paused = Gauge(
            "equeue_queue_paused", "1 while the queue is paused.", ["queue"], registry=registry
        )
        self._workers = Gauge(
            "equeue_workers", "Worker processes whose heartbeat is recent.", registry=registry
        )
        self._clock = clock
        self._read_snapshot = snapshot
        self._snapshot_ttl = snapshot_ttl
        self._snapshot_at: float | None = None
        self._reading = asyncio.Lock()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.subscription = bus.subscribe(self.observe, *_SUBSCRIBED)
        """The event subscription; cancel it to stop counting."""

    async def observe(self, event: events.Event) -> None:
        """Count one event (the bus calls this on the event loop)."""
        if not isinstance(event, events.JobEvent):
            return
        labels = (event.queue, event.job_type)
        if isinstance(event, events.JobEnqueued):
            self._child(self._enqueued, labels).inc()
        elif isinstance(event, events.JobStarted):
            waited = (event.at - event.scheduled_at).total_seconds()
            self._child(self._wait, labels).observe(max(0.0, waited))
        duration = getattr(event, "duration", None)
        if duration is not None:
            self._child(self._duration, labels).observe(duration)
        kind = outcome(event)
        if kind is not None:
            self._child(self._finished, (*labels, kind)).inc()

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        # `labels()` checks and locks on every call: the child of each label set is kept, as
        # every job of a type in a queue counts under the same one.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition a scrape gets, and its content type: Prometheus text, or OpenMetrics
        when ``accept`` (the request's ``Accept`` header) asks for it."""
        from prometheus_client.exposition import choose_encoder

        await self._refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    async def _refresh(self) -> None:
        async with self._reading:  # concurrent scrapes share one read
            now = self._clock.monotonic()
            if self._snapshot_at is not None and now - self._snapshot_at < self._snapshot_ttl:
                return
            self._set_gauges(await self._read_snapshot())
            self._snapshot_at = self._clock.monotonic()

    def _set_gauges(self, snapshot: MetricsSnapshot) -> None:
        # A queue that went away (its jobs and settings gone) disappears from the gauges.
        for gauge in (self._backlog, self._oldest, self._paused):
            gauge.clear()
        for row in snapshot.queues:
            self._backlog.labels(row.queue).set(row.backlog)
            self._oldest.labels(row.queue).set(row.oldest_age or 0.0)
            self._paused.labels(row.queue).set(1 if row.paused else 0)
        self._workers.set(snapshot.workers)
