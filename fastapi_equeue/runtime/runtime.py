"""``Runtime``: one process's workers (producer, completer, heartbeat, rescuer, cancel watcher).

Shared by ``queue.lifespan``, ``async with queue``, the standalone worker CLI and
``testing.drain``. It never installs signal handlers and never blocks the host's loop.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi_equeue.backend import Backend
from fastapi_equeue.clock import Clock
from fastapi_equeue.config import Config
from fastapi_equeue.jobs import new_job_id
from fastapi_equeue.runtime.completer import Completer
from fastapi_equeue.runtime.executor import Executor
from fastapi_equeue.runtime.heartbeat import Heartbeat
from fastapi_equeue.runtime.producer import Producer
from fastapi_equeue.runtime.reconciler import Reconciler
from fastapi_equeue.runtime.rescuer import Rescuer
from fastapi_equeue.runtime.service import every, log_crash
from fastapi_equeue.tasks import TaskRegistry

logger = logging.getLogger(__name__)

# How long, after cancelling the attempts still running at the end of the grace period, to wait
# for them to hand back their outcome; an attempt that ignores cancellation is left to the rescuer.
CANCEL_WAIT = 5.0
# How long a stopping runtime keeps trying to write outcomes before leaving them to the rescuer.
FLUSH_WAIT = 30.0


class Runtime:
    """The workers of one process against one backend."""

    def __init__(
        self,
        backend: Backend,
        registry: TaskRegistry,
        config: Config,
        clock: Clock,
        *,
        concurrency: int,
        queues: tuple[str, ...] | None,
        burst: bool = False,
    ) -> None:
        self.worker_id = new_job_id()
        self._backend = backend
        self._config = config
        # Outcomes wait for company while jobs run or a claim may bring more.
        self._completer = Completer(
            backend, others_running=lambda: bool(self.producer.running) or self.producer.claiming
        )
        executor = Executor(registry, worker_id=self.worker_id, clock=clock, threads=concurrency)
        self.producer = Producer(
            backend,
            executor,
            self._completer,
            config,
            worker_id=self.worker_id,
            concurrency=concurrency,
            queues=queues,
            burst=burst,
        )
        self._heartbeat = Heartbeat(
            backend,
            worker_id=self.worker_id,
            concurrency=concurrency,
            queues=queues,
            on_lost=lambda: self.producer.cancel_all("lost"),
        )
        self._rescuer = Rescuer(backend, stalled_after=config.stalled_after)
        self._reconciler = Reconciler(
            backend, self.producer, self._completer, worker_id=self.worker_id
        )
        self._stop_maintenance = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._unsubscribe: Callable[[], None] = _nothing

    async def start(self) -> None:
        """Register the worker and start every loop."""
        await self._heartbeat.register()
        await self._backend.notifier.start()
        self._unsubscribe = self._backend.notifier.subscribe(self.producer.on_notification)
        config = self._config
        # Without NOTIFY a cancel request is only seen by looking; with it, looking is a backstop.
        reconcile_every = (
            config.heartbeat_interval
            if self._backend.capabilities.listen_notify
            else config.poll_interval
        )
        self._spawn("producer", self.producer.run())
        self._spawn("completer", self._completer.run())
        for name, interval, step in (
            ("heartbeat", config.heartbeat_interval, self._heartbeat.beat),
            ("rescuer", config.heartbeat_interval, self._rescuer.rescue),
            ("reconciler", reconcile_every, self._reconciler.check),
        ):
            self._spawn(name, every(interval, step, what=name, stop=self._stop_maintenance))
        logger.info("worker %s started", self.worker_id)

    async def wait_producer(self) -> None:
        """Return when the producer stops (in burst mode: when nothing is due)."""
        await self._tasks["producer"]

    async def stop(self, grace: float | None = None) -> None:
        """Stop in order: claim nothing more, let running jobs finish within ``grace`` seconds,
        put the rest back, write every outcome, then stop beating and deregister."""
        grace = self._config.shutdown_grace if grace is None else grace
        self.producer.stop_claiming()
        await _settle(self._tasks.get("producer"))
        await self.producer.wait_running(grace)
        if self.producer.running:
            logger.info(
                "shutdown grace of %.1fs is over; putting %d running jobs back",
                grace,
                len(self.producer.running),
            )
            self.producer.cancel_all("shutdown")
            await self.producer.wait_running(CANCEL_WAIT)
        self._completer.stop()
        completer = self._tasks.get("completer")
        if completer is not None:
            done, _ = await asyncio.wait({completer}, timeout=FLUSH_WAIT)
            if not done:
                logger.error("could not write every job outcome; the rescuer will take them back")
                completer.cancel()
        self._unsubscribe()
        # Heartbeats go on until here, so that no job is rescued while it drains.
        self._stop_maintenance.set()
        for name in ("heartbeat", "rescuer", "reconciler"):
            await _settle(self._tasks.get(name))
        if not self.producer.running:
            with contextlib.suppress(Exception):
                await self._backend.worker_deregister(self.worker_id)
        logger.info("worker %s stopped", self.worker_id)

    async def flushed(self) -> None:
        """Return once every outcome produced so far is written."""
        await self._completer.flushed()

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"equeue-{name}-{self.worker_id[-8:]}")
        task.add_done_callback(log_crash)
        self._tasks[name] = task


def _nothing() -> None:
    return


async def _settle(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.shield(task)
