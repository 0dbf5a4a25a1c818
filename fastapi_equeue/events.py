"""What happens to jobs, workers and queues, as typed events, and the bus that delivers them.

Every transition a job goes through in this process (enqueued, started, retrying, completed,
failed, cancelled, requeued, rescued, pruned), every worker's start, loss and stop, and every
change to a queue's settings is one event, emitted in one place (the store, for the database's
transitions). Lifecycle logging is a subscriber; so are metrics, traces, the dashboard's live
feed and tests.

Subscribers belong to one ``EQueue`` (``queue.events``), never to the process. Each gets every
event it asked for, in order, one at a time, from a delivery task of its own: an ``async def``
subscriber runs on the event loop, a plain ``def`` one in a worker thread (as FastAPI runs
endpoints). Emitting never waits for a subscriber and never fails: a subscriber that raises is
reported once and keeps receiving; one that falls more than ``max_backlog`` events behind loses
the oldest (reported once).

Example:
    >>> async def on_failed(event: events.JobFailed) -> None:
    ...     await alert(f"{event.job_type} {event.job_id} failed: {event.error}")
    >>> queue.events.subscribe(on_failed, events.JobFailed)
"""

import asyncio
import collections
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import anyio.to_thread

from fastapi_equeue.jobs import JobStatus

logger = logging.getLogger(__name__)

DEFAULT_MAX_BACKLOG = 10_000
"""Events a subscriber may fall behind by before it loses the oldest."""
DRAIN_TIMEOUT = 5.0
"""Seconds a closing bus waits for subscribers to take what they were sent."""

# -- the events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened, and when (the queue's clock)."""

    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent(Event):
    """Something that happened to one job; ``attempt`` is the number of the attempt concerned
    (1 for the first; 0 when none has run, as for an enqueued job)."""

    job_id: str
    job_type: str
    queue: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEnqueued(JobEvent):
    """A job was added (at commit, when a host's transaction carried it)."""

    priority: int
    scheduled_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(JobEvent):
    """A worker of this process claimed the job and runs an attempt."""

    worker_id: str
    scheduled_at: datetime
    """When the job became due: ``at - scheduled_at`` is how long it waited."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptEnded(JobEvent):
    """An attempt of this process ended; ``duration`` is how long it ran, in seconds."""

    worker_id: str
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCompleted(AttemptEnded):
    """The attempt succeeded; the job is ``completed``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRetrying(AttemptEnded):
    """The attempt failed and another is scheduled ``retry_in`` seconds later."""

    error: str
    retry_in: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(AttemptEnded):
    """The attempt failed and none is left: the job is ``failed``."""

    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled(JobEvent):
    """The job is ``cancelled``: at once when it was waiting, or when its running attempt
    stopped (then ``duration`` says how long it ran)."""

    worker_id: str | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcomeDiscarded(AttemptEnded):
    """The attempt ended, but the job had been taken back from this worker (its worker was
    declared lost): the outcome was not written, and the job's new attempt decides."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobProgress(JobEvent):
    """A running attempt reported its progress, and it was stored (at most about once a
    second per job: the first and the last report always are)."""

    fraction: float
    message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelRequested(JobEvent):
    """A running job was asked to cancel; its worker stops it and it ends ``cancelled``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequeued(JobEvent):
    """The job is ``queued`` again without its attempt counting.

    ``reason``: ``"shutdown"`` (its worker stopped before it finished), ``"not_received"`` (a
    claim whose reply never arrived) or ``"retry"`` (a manual retry of a failed or cancelled
    job, with its attempts reset).
    """

    reason: Literal["shutdown", "not_received", "retry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRescued(JobEvent):
    """The job's worker went silent past ``stalled_after``; this process took the job back.

    ``status`` is where it went: ``queued`` (the lost attempt counts), ``failed`` (it was the
    last) or ``cancelled`` (it was being cancelled).
    """

    lost_worker_id: str | None
    status: JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsPruned(Event):
    """Finished jobs older than their retention were deleted: how many, by status."""

    counts: Mapping[JobStatus, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerEvent(Event):
    """Something that happened to a worker process."""

    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStarted(WorkerEvent):
    """A worker of this process registered and started claiming."""

    hostname: str
    pid: int
    concurrency: int
    queues: tuple[str, ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerLost(WorkerEvent):
    """A worker was declared lost: this process's rescuer forgot one that went silent, or this
    process's own worker found itself forgotten (``ours``) and abandoned its attempts."""

    ours: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStopped(WorkerEvent):
    """A worker of this process stopped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEvent(Event):
    """A queue's settings changed (by this process)."""

    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuePaused(QueueEvent):
    """The queue starts no job until it is resumed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueResumed(QueueEvent):
    """The queue starts jobs again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimitsChanged(QueueEvent):
    """The queue's limits are now these (``None``: no limit)."""

    concurrency: int | None
    rate: str | None


# -- the bus -----------------------------------------------------------------------------------

E = TypeVar("E", bound=Event)
Handler = Callable[[Any], Awaitable[None] | None]


class Subscription:
    """One subscriber's place on the bus: its backlog and its delivery task."""

    def __init__(
        self,
        bus: "EventBus",
        handler: Handler,
        kinds: tuple[type[Event], ...],
        when: Callable[[Event], bool] | None,
        when_kind: Callable[[type[Event]], bool] | None,
        max_backlog: int,
    ) -> None:
        self._bus = bus
        self.handler = handler
        self.kinds = kinds
        self.when = when
        self.when_kind = when_kind
        self.name = getattr(handler, "__qualname__", repr(handler))
        self._threaded = not inspect.iscoroutinefunction(handler)
        self._backlog: collections.deque[Event] = collections.deque()
        self._max_backlog = max_backlog
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._raised = 0
        self._dropped = 0
        self._closing = False

    def cancel(self) -> None:
        """Stop receiving events; those already sent are still delivered."""
        self._bus._remove(self)
        self._closing = True
        self._ready.set()

    def __call__(self) -> None:
        self.cancel()

    def wants(self, event: Event) -> bool:
        """Whether ``event`` is one this subscriber asked for."""
        return isinstance(event, self.kinds) and (self.when is None or self.when(event))

    def wants_kind(self, kind: type[Event]) -> bool:
        """Whether this subscriber may want events of ``kind`` now."""
        return issubclass(kind, self.kinds) and (self.when_kind is None or self.when_kind(kind))

    def put(self, event: Event) -> None:
        """Queue ``event`` for delivery; returns at once."""
        if len(self._backlog) >= self._max_backlog:
            self._backlog.popleft()
            self._dropped += 1
            if self._dropped == 1:
                logger.warning(
                    "event subscriber %s is %d events behind; dropping the oldest",
                    self.name,
                    self._max_backlog,
                )
        self._backlog.append(event)
        self._ready.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._deliver(), name=f"equeue-events-{self.name}"
            )

    async def close(self, timeout: float) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then stop."""
        self._closing = True
        self._ready.set()
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            logger.warning("event subscriber %s did not finish its backlog; gave up", self.name)

    async def _deliver(self) -> None:
        while True:
            if not self._backlog:
                if self._closing:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            batch = list(self._backlog)
            self._backlog.clear()
            if self._threaded:
                await anyio.to_thread.run_sync(self._call_each, batch, abandon_on_cancel=True)
            else:
                for event in batch:
                    try:
                        await self.handler(event)  # type: ignore[misc]
                    except Exception as exc:
                        self._report(exc, event)

    def _call_each(self, batch: list[Event]) -> None:
        for event in batch:
            try:
                self.handler(event)
            except Exception as exc:
                self._report(exc, event)

    def _report(self, exc: Exception, event: Event) -> None:
        self._raised += 1
        if self._raised == 1:
            logger.error(
                "event subscriber %s raised on %s; it keeps receiving events, and its later "
                "errors are not logged",
                self.name,
                type(event).__name__,
                exc_info=exc,
            )


class EventBus:
    """The events of one ``EQueue`` and their subscribers (``queue.events``)."""

    def __init__(self, *, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self._subscriptions: list[Subscription] = []
        self._max_backlog = max_backlog
        self._wanted: dict[type[Event], bool] = {}

    def subscribe(
        self,
        handler: Callable[[E], Awaitable[None] | None],
        *kinds: type[E],
        when: Callable[[E], bool] | None = None,
        when_kind: Callable[[type[Event]], bool] | None = None,
    ) -> Subscription:
        """Call ``handler`` with every event of ``kinds`` (and their subclasses; none: all).

        ``when`` and ``when_kind``, if given, are asked at emit time whether to send an event
        (``when_kind`` before the event is even built, from its kind alone): keep them cheap,
        and they must not raise. Returns the subscription; ``cancel()`` it (or call it) to stop.
        """
        subscription = Subscription(
            self,
            handler,
            kinds or (Event,),
            when,  # type: ignore[arg-type]
            when_kind,
            self._max_backlog,
        )
        self._subscriptions.append(subscription)
        self._wanted.clear()
        return subscription

    def wants(self, kind: type[Event]) -> bool:
        """Whether any subscriber may want events of ``kind`` now: emitters skip building
        events nobody would receive."""
        wanted = self._wanted.get(kind)
        if wanted is None:
            wanted = any(
                issubclass(kind, sub.kinds) for sub in self._subscriptions if not sub.when_kind
            )
            self._wanted[kind] = wanted
        return wanted or any(sub.wants_kind(kind) for sub in self._subscriptions if sub.when_kind)

    def emit(self, event: Event) -> None:
        """Send ``event`` to its subscribers; returns at once, whatever they do."""
        for subscription in self._subscriptions:
            if subscription.wants(event):
                subscription.put(event)

    @contextlib.contextmanager
    def record(self, *kinds: type[E]) -> Iterator["Recorder[E]"]:
        """Collect events of ``kinds`` while the block runs; tests wait on them.

        Example:
            >>> with queue.events.record(events.JobCompleted) as seen:
            ...     job = await queue.client.enqueue("add", {"a": 1, "b": 2})
            ...     await seen.wait_for(lambda e: e.job_id == job.id, timeout=5)
        """
        recorder: Recorder[E] = Recorder()
        subscription = self.subscribe(recorder._on_event, *kinds)
        try:
            yield recorder
        finally:
            subscription.cancel()

    async def close(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Deliver every event already sent (up to ``timeout``), then stop the delivery tasks.

        Subscriptions stay: events emitted later start delivery again.
        """
        await asyncio.gather(*(sub.close(timeout) for sub in tuple(self._subscriptions)))
        for subscription in self._subscriptions:
            subscription._closing = False

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            self._wanted.clear()


@dataclass
class Recorder(Generic[E]):
    """Events seen while ``EventBus.record`` was open, in order."""

    events: list[E] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, predicate: Callable[[E], bool] | None = None, *, timeout: float) -> E:
        """The first event (seen before or after the call) that ``predicate`` accepts.

        Raises:
            TimeoutError: none came within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate is None or predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    async def wait_count(
        self, count: int, predicate: Callable[[E], bool] | None = None, *, timeout: float
    ) -> list[E]:
        """The first ``count`` events that ``predicate`` accepts, once there are that many.

        Raises:
            TimeoutError: fewer came within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                matching = [e for e in self.events if predicate is None or predicate(e)]
                if len(matching) >= count:
                    return matching[:count]
                self._changed.clear()
                await self._changed.wait()

    async def _on_event(self, event: E) -> None:
        self.events.append(event)
        self._changed.set()
