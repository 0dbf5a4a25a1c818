"""``EQueue``: the queue object users create. Wiring only: config, tasks, backend, runtime."""

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, overload

from fastapi_equeue import eventlog, events, metrics, tracing
from fastapi_equeue.backend import Backend, BackendOptions, MetricsSnapshot
from fastapi_equeue.backends import open_backend
from fastapi_equeue.client import QueueClient
from fastapi_equeue.clock import Clock, SystemClock
from fastapi_equeue.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_FAILED_RETENTION,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_QUEUE,
    DEFAULT_RETENTION,
    DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_STALLED_AFTER,
    Config,
    seconds,
)
from fastapi_equeue.errors import ConfigurationError
from fastapi_equeue.live import ChangeFeed
from fastapi_equeue.periodic import Schedule, declare
from fastapi_equeue.retry import RetryDelay
from fastapi_equeue.runtime.runtime import Runtime
from fastapi_equeue.startup import Startup
from fastapi_equeue.store import Store
from fastapi_equeue.tasks import Task, TaskRegistry

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from fastapi_equeue.api.ratelimit import RateLimitKey, SubmitLimiter
    from fastapi_equeue.dashboard.access import ReadOnlyCheck

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class EQueue:
    """A durable job queue on PostgreSQL or SQLite, with workers in this process or others.

    Example:
        >>> queue = EQueue("sqlite+aiosqlite:///./equeue.db")
        >>> @queue.task(max_attempts=3, timeout=30)
        ... async def send_email(recipient_email: str, subject: str, body: str) -> dict:
        ...     return {"delivered": True}
        >>> app = FastAPI(lifespan=queue.lifespan)
        >>> app.include_router(equeue.router)

    Args:
        database_url: ``postgresql+asyncpg://...`` or ``sqlite+aiosqlite:///path.db``.
        concurrency: jobs run at once by this process's workers; ``0``: enqueue only.
        queues: the queues this process's workers take jobs from (``None``: all).
        poll_interval: seconds between looks for work when no notification comes.
        heartbeat_interval: seconds between a worker's proofs of life.
        stalled_after: seconds of silence after which a worker's jobs are taken back.
        shutdown_grace: seconds running jobs may finish on shutdown before being put back.
        max_payload_bytes: the largest payload (JSON, UTF-8) accepted.
        auto_migrate: apply the schema on start.
        retention: how long completed and cancelled jobs are kept after they finish (seconds or
            a ``timedelta``; ``None``: forever). Workers delete older ones in small batches,
            which frees their idempotency keys.
        failed_retention: the same for failed jobs.
        pool_size: database connections at most (default: 20 on PostgreSQL, 5 on SQLite).
        listen_url: a direct PostgreSQL URL used only to LISTEN, when ``database_url`` goes
            through a pooler such as PgBouncer in transaction mode.
        poll_only: listen nowhere; workers find other processes' jobs by polling every
            ``poll_interval``.
        rate_limit: at most this many ``POST /jobs`` per client, e.g. ``"10/second"`` or
            ``"100 per minute"`` (``None``: no limit); over it the API answers 429.
        rate_limit_key: who a submission counts against (a function of the request, sync or
            async); by default the client's address.
        clock: where the queue reads and waits for the time (tests pass a
            ``fastapi_equeue.testing.ManualClock``); by default the real time, and on
            PostgreSQL the database's clock for what it stores.
        tracer_provider: trace enqueues and attempts with this OpenTelemetry provider (e.g.
            ``opentelemetry.trace.get_tracer_provider()``; needs ``fastapi-equeue[otel]``);
            ``None``: no tracing, at no cost.
        dashboard_read_only: ``True`` makes ``/jobs/dashboard`` show without acting (no
            cancel, retry, pause, limits, bulk or submit); or a function of the request (sync
            or async) that says so per user, e.g. from its role.
    """

    def __init__(
        self,
        database_url: str,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        queues: Sequence[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        stalled_after: float = DEFAULT_STALLED_AFTER,
        shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        auto_migrate: bool = True,
        retention: float | timedelta | None = DEFAULT_RETENTION,
        failed_retention: float | timedelta | None = DEFAULT_FAILED_RETENTION,
        pool_size: int | None = None,
        listen_url: str | None = None,
        poll_only: bool = False,
        rate_limit: str | None = None,
        rate_limit_key: "RateLimitKey | None" = None,
        clock: Clock | None = None,
        tracer_provider: "TracerProvider | None" = None,
        dashboard_read_only: "bool | ReadOnlyCheck" = False,
    ) -> None:
        if isinstance(queues, str):
            raise ConfigurationError("queues must be a list of queue names, not one string")
        self.config = Config(
            database_url=database_url,
            concurrency=concurrency,
            queues=tuple(queues) if queues is not None else None,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            stalled_after=stalled_after,
            shutdown_grace=shutdown_grace,
            max_payload_bytes=max_payload_bytes,
            auto_migrate=auto_migrate,
            retention=seconds("retention", retention),
            failed_retention=seconds("failed_retention", failed_retention),
            pool_size=pool_size,
            listen_url=listen_url,
            poll_only=poll_only,
        )
        self.registry = TaskRegistry()
        self._schedules: dict[str, Schedule] = {}
        self.submit_limiter: SubmitLimiter | None = None
        if rate_limit is not None:
            from fastapi_equeue.api import ratelimit  # the web side, on demand

            self.submit_limiter = ratelimit.SubmitLimiter(rate_limit, rate_limit_key)
        # The clock given, if any, is also where the database's stored times come from.
        self._backend_options = BackendOptions(
            clock=clock,
            pool_size=pool_size,
            listen_url=listen_url,
            poll_only=poll_only,
        )
        self._clock = clock or SystemClock()
        self.events = events.EventBus()
        """This queue's events: ``queue.events.subscribe(handler, events.JobFailed)``."""
        eventlog.attach(self.events)
        self._backend: Backend | None = None
        self._store: Store | None = None
        self._client: QueueClient | None = None
        self._runtime: Runtime | None = None
        self._stack: AsyncExitStack | None = None
        self._metrics: metrics.QueueMetrics | None = None
        self._tracing = tracing.build(tracer_provider)
        self._app: Any = None  # the app whose lifespan runs the queue: tasks' JobContext.app
        self._changes: ChangeFeed | None = None
        self.dashboard_read_only = dashboard_read_only
        """Whether the dashboard only shows (``True``), or a function of the request that
        says so per user; ``False``: its actions work for whoever reaches it."""

    # -- tasks -------------------------------------------------------------------------------------

    @overload
    def task(self, name: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        name: str | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float | None = None,
        retry_delay: RetryDelay = None,
        priority: int = 0,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        name: str | Callable[P, R] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float | None = None,
        retry_delay: RetryDelay = None,
        priority: int = 0,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a job type (its name, unless ``name`` is given).

        Example:
            >>> @queue.task(max_attempts=5, timeout=30, retry_delay=10)
            ... def resize(image_id: int, width: int = 640) -> dict: ...

        Usable bare (``@queue.task``) or with options; the decorated function stays callable.
        """

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task = Task(
                fn=fn,
                name=name if isinstance(name, str) else fn.__name__,
                queue=queue,
                max_attempts=max_attempts,
                timeout=timeout,
                retry_delay=retry_delay,
                priority=priority,
            )
            self.registry.add(task)
            return task

        if callable(name):
            return register(name)
        return register

    # -- periodic jobs -----------------------------------------------------------------------------

    def periodic(
        self,
        cron: str,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        name: str | None = None,
    ) -> Schedule:
        """Enqueue a job of ``job_type`` once per tick of ``cron``, over every process.

        Example:
            >>> queue.periodic("30 2 * * *", "nightly_report", {"format": "pdf"},
            ...                timezone="Europe/Berlin")

        Every worker process runs the schedule and exactly one job is enqueued per tick. A
        new schedule waits for its next tick; after downtime only the latest missed tick runs.
        The jobs are ordinary jobs of the task's queue, with its options.

        Args:
            cron: five fields (minute hour day-of-month month day-of-week), read by cronsim.
            job_type: a task registered (``@queue.task``) before this call.
            payload: the task's keyword arguments, checked here against its parameters.
            timezone: the IANA time zone the cron is read in (DST-aware).
            name: the schedule's name, unique in this queue (default: ``job_type``).

        Raises:
            ConfigurationError: a bad cron or time zone, an unregistered task, a bad payload,
                a name already used, or a queue already started; it names what is wrong.
        """
        if self.started:
            raise ConfigurationError("declare periodic jobs before the queue starts")
        schedule = declare(
            cron,
            job_type,
            payload,
            timezone=timezone,
            name=name,
            registry=self.registry,
            max_payload_bytes=self.config.max_payload_bytes,
        )
        if schedule.name in self._schedules:
            raise ConfigurationError(
                f"a schedule named {schedule.name!r} exists already: give each schedule of one "
                "job type its own name=..."
            )
        self._schedules[schedule.name] = schedule
        return schedule

    @property
    def schedules(self) -> Mapping[str, Schedule]:
        """This queue's periodic jobs, by name."""
        return self._schedules

    # -- running -----------------------------------------------------------------------------------

    @property
    def client(self) -> QueueClient:
        """The ``QueueClient`` of a started queue."""
        if self._client is None:
            raise ConfigurationError(
                "the queue is not started: use FastAPI(lifespan=queue.lifespan) or "
                "`async with queue:` before enqueueing"
            )
        return self._client

    @property
    def runtime(self) -> Runtime | None:
        """This process's in-process workers, when they run."""
        return self._runtime

    @property
    def metrics(self) -> metrics.QueueMetrics | None:
        """This queue's Prometheus metrics (``GET /jobs/metrics``), built on first use and
        counting from then on (a started queue has built them); ``None`` when
        ``prometheus_client`` is not installed (``pip install fastapi-equeue[metrics]``)."""
        if self._metrics is None:
            self._metrics = metrics.build(self.events, self._clock, self._metrics_snapshot)
        return self._metrics

    @property
    def changes(self) -> ChangeFeed:
        """A debounced signal that jobs or queues changed, in any process: what the
        dashboard's live stream reads."""
        if self._store is None:
            raise ConfigurationError("the queue is not started: it has no changes to follow")
        if self._changes is None:
            self._changes = ChangeFeed(self._store)
        return self._changes

    async def _metrics_snapshot(self) -> MetricsSnapshot:
        if self._store is None:
            raise ConfigurationError("the queue is not started: its metrics cannot be read")
        return await self._store.metrics_snapshot(self.config.stalled_after)

    @property
    def started(self) -> bool:
        """Whether the queue is connected."""
        return self._client is not None

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise ConfigurationError("the queue is already started")
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(self.connected())
            if self.config.concurrency > 0:
                await stack.enter_async_context(
                    self.workers(self.config.concurrency, self.config.queues)
                )
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            # Shielded: a cancelled shutdown must still put running jobs back and write outcomes.
            await _shielded(stack.aclose())

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """The FastAPI lifespan: ``FastAPI(lifespan=queue.lifespan)``, or nested in a host's own
        as ``async with queue.lifespan(app): yield``. Puts the queue on ``app.state.equeue``;
        its tasks see ``app`` as ``JobContext.app``."""
        self._app = app
        try:
            async with self:
                app.state.equeue = self
                from fastapi_equeue.api.mounting import prepare_app  # the web side, on demand

                prepare_app(app, self.registry)
                try:
                    yield
                finally:
                    if getattr(app.state, "equeue", None) is self:
                        del app.state.equeue
        finally:
            self._app = None

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[QueueClient]:
        """Connect and migrate (with ``auto_migrate``), without running workers.

        Listening for notifications starts with the first thing that needs them (workers, a
        ``wait``): an app that only enqueues keeps no listening connection, and does not hear
        every job it enqueues announced back to it.
        """
        if self._backend is not None:
            yield self.client
            return
        backend = open_backend(self.config.database_url, self._backend_options)
        store = Store(backend, self.events, self._clock, ready=False)
        _ = self.metrics  # counting starts with the queue (when prometheus_client is there)
        startup = Startup(backend, store, migrate=self.config.auto_migrate)
        waiting: asyncio.Task[None] | None = None
        try:
            if not await startup.try_once():
                # The database is down: start anyway, answer 503, and keep trying.
                waiting = asyncio.create_task(startup.retry(), name="equeue-startup")
            self._backend = backend
            self._store = store
            self._client = QueueClient(
                self._store,
                self.registry,
                self.config,
                self._clock,
                schedules=self._schedules,
                tracing=self._tracing,
            )
            yield self._client
        finally:
            if waiting is not None:
                waiting.cancel()
                with contextlib.suppress(BaseException):
                    await waiting
            changes, self._changes = self._changes, None
            if changes is not None:
                await changes.close()
            self._client = None
            self._store = None
            self._backend = None
            try:
                await self.events.close()
            finally:
                await backend.close()

    @asynccontextmanager
    async def workers(
        self, concurrency: int, queues: tuple[str, ...] | None
    ) -> AsyncIterator[Runtime]:
        """Run workers in this process while the context is open; needs ``connected``."""
        if self._backend is None:
            raise ConfigurationError("connect the queue before starting workers")
        runtime = self.new_runtime(concurrency=concurrency, queues=queues)
        if self._store is not None and self._store.ready:
            await runtime.start()
        else:
            # The database is down: the workers start once it is reached, without holding up
            # the app meanwhile.
            runtime.launch()
        self._runtime = runtime
        try:
            yield runtime
        finally:
            try:
                await runtime.stop()
            finally:
                self._runtime = None

    def new_runtime(
        self, *, concurrency: int, queues: tuple[str, ...] | None, burst: bool = False
    ) -> Runtime:
        """A runtime (not started) against the connected backend."""
        if self._store is None:
            raise ConfigurationError("connect the queue before starting workers")
        if concurrency < 1:
            raise ConfigurationError(f"workers need concurrency >= 1, got {concurrency}")
        return Runtime(
            self._store,
            self.registry,
            self.config,
            self._clock,
            concurrency=concurrency,
            queues=queues,
            burst=burst,
            schedules=tuple(self._schedules.values()),
            beat_backend=self._open_beat_backend,
            app=self._app,
            tracing=self._tracing,
        )

    def _open_beat_backend(self) -> Backend:
        # The heartbeat thread's own: one connection, no listening.
        options = dataclasses.replace(self._backend_options, pool_size=1, poll_only=True)
        return open_backend(self.config.database_url, options)

    async def migrate(self) -> list[str]:
        """Apply pending migrations now; returns their names."""
        backend = open_backend(self.config.database_url, self._backend_options)
        try:
            return await backend.migrate()
        finally:
            await backend.close()

    def migration_script(self) -> str:
        """The schema as one SQL script, for teams that run their own migration tool."""
        return open_backend(self.config.database_url, self._backend_options).migration_script()


async def _shielded(aw: Any) -> None:
    task = asyncio.ensure_future(aw)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # Finish the shutdown before letting the cancellation through.
        with contextlib.suppress(Exception):
            await task
        raise
