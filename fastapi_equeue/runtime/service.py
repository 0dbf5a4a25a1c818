"""The one shape of every long-running part of a runtime, and the supervisor that runs them.

A ``Service`` starts (``start``: what the next services rely on, such as the worker's row),
runs (``run``: until asked to stop, then it finishes its own work and returns) and is asked to
stop (``stop``: returns at once). A ``Supervisor`` runs a list of them under one task group:
started in order, each once the one before is ready; stopped in the reverse order, each once
the ones after it have ended. The order is the runtime's shutdown: stop claiming, let running
jobs finish, write every outcome, and only then stop proving the worker alive.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Sequence
from typing import Protocol

from fastapi_equeue.clock import Clock

logger = logging.getLogger(__name__)


class Service(Protocol):
    """A long-running part of a runtime."""

    name: str

    async def start(self) -> None:
        """Prepare what the services started after this one rely on; return when ready."""

    async def run(self) -> None:
        """Work until ``stop``, then finish what is in hand and return."""

    def stop(self) -> None:
        """Ask ``run`` to finish; returns at once."""


class Supervisor:
    """Runs services under one task group, in order, and stops them in the reverse order.

    When any service ends on its own (it crashed, or a burst ran out of work), the others are
    stopped in order too: a worker missing one of its parts (its heartbeat, say) must not go
    on claiming. ``failure`` then holds the crash, if there was one.
    """

    def __init__(self, services: Sequence[Service], *, name: str) -> None:
        self._services = tuple(services)
        self._name = name
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self._failed_start: Exception | None = None

    async def start(self) -> None:
        """Start every service in order; raises what a failing ``start`` raised, once the
        services already started have stopped."""
        self.launch()
        if not await self.ready():
            await self.wait()
            if self._failed_start is not None:
                raise self._failed_start

    def launch(self) -> None:
        """Start every service in order, in the background: ``ready`` says when all have."""
        if self._task is not None:
            raise RuntimeError("a supervisor starts once")
        self._task = asyncio.create_task(self._main(), name=f"equeue-{self._name}")

    async def ready(self) -> bool:
        """Wait until every service has started (``True``) or the services have ended without
        (``False``: a start failed, or they were stopped first)."""
        if self._task is None:
            raise RuntimeError("the supervisor was not started")
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        return self._ready.is_set()

    async def stop(self) -> None:
        """Stop every service in the reverse order and return when all have ended."""
        self.request_stop()
        await self.wait()

    def request_stop(self) -> None:
        """Begin stopping every service in the reverse order; returns at once."""
        self._stopping.set()

    async def wait(self) -> None:
        """Return once every service has ended (after ``stop``, a crash or a finished burst)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def stopping(self) -> bool:
        """Whether the services are being (or have been) stopped."""
        return self._stopping.is_set()

    async def _main(self) -> None:
        started: list[tuple[Service, asyncio.Task[None]]] = []
        async with asyncio.TaskGroup() as group:
            try:
                for service in self._services:
                    # A start may wait (for the database, say): a stop cuts it short.
                    if not await _unless(self._stopping, service.start()):
                        break
                    task = group.create_task(
                        self._guard(service), name=f"equeue-{self._name}-{service.name}"
                    )
                    started.append((service, task))
                else:
                    self._ready.set()
            except Exception as exc:
                self.failure = self._failed_start = exc
                self._stopping.set()
            await self._stopping.wait()
            for service, task in reversed(started):
                service.stop()
                await asyncio.wait({task})

    async def _guard(self, service: Service) -> None:
        try:
            await service.run()
        except Exception as exc:
            logger.exception("%s of %s crashed; stopping the rest", service.name, self._name)
            if self.failure is None:
                self.failure = exc
        finally:
            # A service that ends on its own ends the runtime: the rest stop, in order.
            self._stopping.set()


async def _unless(stop: asyncio.Event, aw: Awaitable[None]) -> bool:
    """Await ``aw`` unless ``stop`` is set first (then ``aw`` is cancelled): whether it ended."""
    task = asyncio.ensure_future(aw)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True


class Periodic:
    """A service that calls ``tick`` at once, then every ``interval`` seconds (+/- 10 %) of its
    clock from the start of the tick before, until stopped. A failing tick is logged (the
    first, then every tenth in a row) and tried again at the next interval; cancellation is
    never swallowed."""

    name = "periodic"

    def __init__(self, *, interval: float, clock: Clock) -> None:
        self._interval = interval
        self._clock = clock
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Nothing to prepare."""

    async def run(self) -> None:
        """Tick until stopped."""
        failures = 0
        while not self._stopped.is_set():
            # The next tick is due an interval after this one began, however long it takes:
            # time that passes meanwhile (a slow database, a test's clock moved) is not lost.
            next_at = self._clock.monotonic() + self._interval * random.uniform(0.9, 1.1)
            try:
                await self.tick()
                failures = 0
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    logger.warning("%s failed (%s: %s)", self.name, type(exc).__name__, exc)
            await self._clock.wait_until(self._stopped, next_at)
        await self.finish()

    def stop(self) -> None:
        """Stop after the tick in progress, if any."""
        self._stopped.set()

    async def tick(self) -> None:
        """One round of the service's work."""
        raise NotImplementedError

    async def finish(self) -> None:
        """What to do once stopped (nothing, unless a service says otherwise)."""


async def back_off(failures: int, *, base: float, cap: float, stop: asyncio.Event) -> None:
    """Wait (real time, jittered) before trying a failed operation again, or until ``stop``."""
    delay = min(cap, base * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await stop.wait()
