"""``Runtime``: one process's workers against one queue's store, as services in their order.

Shared by ``queue.lifespan``, ``async with queue``, the standalone worker command and
``testing.drain``. It never installs signal handlers and never blocks the host's loop.

Start order, each ready before the next: heartbeat (the worker's row, which a claim requires),
completer, reconciler, rescuer, pruner, the scheduler (when the queue has periodic jobs and the
runtime is not a burst), attempts, producers. Stop order is the reverse: stop
claiming, let running attempts finish within the grace and put the rest back, stop the
maintenance, write every outcome, and only then stop beating and remove the worker.
"""

from collections.abc import Callable, Sequence
from typing import Any

from fastapi_equeue.backend import Backend
from fastapi_equeue.clock import Clock
from fastapi_equeue.config import Config
from fastapi_equeue.jobs import new_job_id
from fastapi_equeue.periodic import Schedule
from fastapi_equeue.runtime.attempts import Attempts
from fastapi_equeue.runtime.completer import Completer
from fastapi_equeue.runtime.executor import Executor
from fastapi_equeue.runtime.heartbeat import BLOCKED_LIMIT_FACTOR, BlockedLoopCover, Heartbeat
from fastapi_equeue.runtime.producer import Claiming
from fastapi_equeue.runtime.producers import Producers
from fastapi_equeue.runtime.pruner import Pruner, prune_interval
from fastapi_equeue.runtime.reconciler import Reconciler
from fastapi_equeue.runtime.rescuer import Rescuer
from fastapi_equeue.runtime.scheduler import Scheduler
from fastapi_equeue.runtime.service import Supervisor
from fastapi_equeue.store import Store
from fastapi_equeue.tasks import TaskRegistry
from fastapi_equeue.tracing import Tracing


class Runtime:
    """The workers of one process: ``concurrency`` slots over ``queues`` (``None``: all);
    ``app``, the ASGI app whose lifespan runs them, if one does, is what tasks see as
    ``JobContext.app``; ``tracing``, when given, opens a span per attempt."""

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        config: Config,
        clock: Clock,
        *,
        concurrency: int,
        queues: tuple[str, ...] | None,
        burst: bool = False,
        schedules: Sequence[Schedule] = (),
        beat_backend: Callable[[], Backend] | None = None,
        app: Any = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.worker_id = new_job_id()
        self.attempts = Attempts(concurrency, grace=config.shutdown_grace)
        self.completer = Completer(store, self.attempts)
        claiming = Claiming(
            store=store,
            attempts=self.attempts,
            executor=Executor(
                registry,
                store=store,
                worker_id=self.worker_id,
                clock=clock,
                threads=concurrency,
                app=app,
                tracing=tracing,
            ),
            completer=self.completer,
            clock=clock,
            worker_id=self.worker_id,
            poll_interval=config.poll_interval,
            burst=burst,
        )
        self._producers = Producers(claiming, queues=queues)
        # Without NOTIFY a cancel request is only seen by looking; with it, looking is a backstop.
        reconcile_every = (
            config.heartbeat_interval if store.capabilities.listen_notify else config.poll_interval
        )
        heartbeat = Heartbeat(
            store,
            self.attempts,
            worker_id=self.worker_id,
            queues=queues,
            interval=config.heartbeat_interval,
            clock=clock,
            cover=None
            if beat_backend is None
            else BlockedLoopCover(
                beat_backend,
                worker_id=self.worker_id,
                interval=config.heartbeat_interval,
                limit=BLOCKED_LIMIT_FACTOR * config.stalled_after,
            ),
        )
        reconciler = Reconciler(
            store,
            self.attempts,
            self.completer,
            worker_id=self.worker_id,
            interval=reconcile_every,
            clock=clock,
        )
        rescuer = Rescuer(
            store,
            worker_id=self.worker_id,
            stalled_after=config.stalled_after,
            interval=config.heartbeat_interval,
            clock=clock,
        )
        pruner = Pruner(
            store,
            retention=config.retention,
            failed_retention=config.failed_retention,
            interval=prune_interval(
                config.retention, config.failed_retention, config.poll_interval
            ),
            clock=clock,
        )
        # A burst runtime (testing.drain) runs what is due and ends: it enqueues nothing.
        self.scheduler = (
            Scheduler(store, registry, schedules, clock=clock, tracing=tracing)
            if schedules and not burst
            else None
        )
        """The scheduler of the queue's periodic jobs, if this runtime runs one."""
        self._supervisor = Supervisor(
            [
                heartbeat,
                self.completer,
                reconciler,
                rescuer,
                pruner,
                *([self.scheduler] if self.scheduler is not None else []),
                self.attempts,
                self._producers,
            ],
            name=f"worker-{self.worker_id[-8:]}",
        )

    @property
    def claimed_total(self) -> int:
        """Jobs this runtime has claimed."""
        return self._producers.claimed_total

    async def start(self) -> None:
        """Register the worker and start every service, in order."""
        await self._supervisor.start()

    def launch(self) -> None:
        """Start every service in the background (they wait for the database if it is down);
        ``ready`` says when they run."""
        self._supervisor.launch()

    async def ready(self) -> bool:
        """Wait until every service runs (``True``), or the runtime ended without (``False``)."""
        return await self._supervisor.ready()

    async def stop(self, grace: float | None = None) -> None:
        """Stop every service in the reverse order; running attempts get ``grace`` seconds
        (default: ``shutdown_grace``) before they are stopped and put back."""
        if grace is not None:
            self.attempts.grace = grace
        await self._supervisor.stop()

    def stop_now(self) -> None:
        """Stop every running attempt at once (they are put back), and stop."""
        self.attempts.grace = 0
        self.attempts.cancel_all("shutdown")
        self._supervisor.request_stop()

    async def wait(self) -> None:
        """Return once the runtime has ended (stopped, crashed, or a burst that drained)."""
        await self._supervisor.wait()

    @property
    def failure(self) -> BaseException | None:
        """What crashed a service, if one did."""
        return self._supervisor.failure

    async def idle(self) -> None:
        """Return once no attempt runs and every outcome is written."""
        await self.attempts.idle()
        await self.completer.flushed()
