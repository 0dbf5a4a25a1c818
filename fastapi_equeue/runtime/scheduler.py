"""The scheduler: enqueues each periodic job once per tick of its cron, from every runtime at
once, with no leader.

Each runtime registers its queue's schedules (keeping how far they have run), then sleeps on
the queue's clock until the next tick of any. Awake, it takes each schedule's latest tick at or
before now and, if that is newer than the last one enqueued, moves the schedule's row on to it
and inserts the job in one transaction: of processes racing for a tick, only the first finds
the row behind it. Ticks missed while no scheduler ran are not made up for, but the latest of
them is enqueued, once.
"""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from fastapi_equeue.backend import (
    JobInsertParams,
    JobRow,
    ScheduleClaimParams,
    ScheduleRegisterParams,
)
from fastapi_equeue.clock import Clock
from fastapi_equeue.jobs import new_job_id
from fastapi_equeue.periodic import Schedule
from fastapi_equeue.runtime.service import back_off
from fastapi_equeue.store import Store
from fastapi_equeue.tasks import TaskRegistry
from fastapi_equeue.tracing import Tracing

logger = logging.getLogger(__name__)

MAX_SLEEP = 60.0
"""Seconds of the clock slept at most at once: a wall clock that jumps (a suspended machine,
a correction) is caught up with within a minute."""
RETRY_BASE = 0.5
RETRY_CAP = 30.0


class Scheduler:
    """Enqueues the jobs of ``schedules`` at their ticks: of the processes that race for a
    tick, the first to move the schedule's row on enqueues it."""

    name = "scheduler"

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        schedules: Sequence[Schedule],
        *,
        clock: Clock,
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._tracing = tracing
        self._registry = registry
        self._schedules = tuple(schedules)
        self._clock = clock
        self._stopped = asyncio.Event()
        self._done: dict[str, datetime] = {}

    @property
    def checked(self) -> Mapping[str, datetime]:
        """Per schedule, the latest tick dealt with: enqueued here, found enqueued elsewhere
        (or left to the definition registered last), or, once registered, the tick it starts
        after."""
        return self._done

    async def start(self) -> None:
        """Register the schedules once the database is reached, so that a started queue's
        schedules count from then; one that fails is registered by ``run``, which retries."""
        await self._store.wait_ready()
        try:
            await self._register()
        except Exception as exc:
            logger.warning("registering schedules failed (%s: %s)", type(exc).__name__, exc)

    async def run(self) -> None:
        """Enqueue the schedules' ticks until stopped (registering any not registered yet)."""
        failures = 0
        while not self._stopped.is_set():
            try:
                await self._register()
                # One look at the clock per round: a tick that passes while the round writes
                # is after `now`, so the round's sleep ends at once and the next enqueues it.
                now = self._clock.now()
                await self._enqueue_due(now)
                failures = 0
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    logger.warning("scheduler failed (%s: %s)", type(exc).__name__, exc)
                await back_off(failures, base=RETRY_BASE, cap=RETRY_CAP, stop=self._stopped)
                continue
            await self._sleep_until(min(schedule.next_tick(now) for schedule in self._schedules))

    def stop(self) -> None:
        """Stop after the round in progress, if any."""
        self._stopped.set()

    async def _register(self) -> None:
        """Record every schedule not registered yet; a new one starts after its latest tick."""
        for schedule in self._schedules:
            if schedule.name in self._done:
                continue
            now = self._clock.now()
            row = await self._store.register_schedule(
                ScheduleRegisterParams(
                    name=schedule.name,
                    cron=schedule.cron,
                    timezone=schedule.timezone,
                    job_type=schedule.job_type,
                    payload_json=schedule.payload_json,
                    last_tick=schedule.latest_tick(now) or now,
                )
            )
            self._done[schedule.name] = row.last_tick
            logger.debug(
                "schedule %r registered: its next tick is after %s",
                schedule.name,
                row.last_tick.isoformat(),
            )

    async def _enqueue_due(self, now: datetime) -> None:
        for schedule in self._schedules:
            tick = schedule.latest_tick(now)
            if tick is not None and tick > self._done[schedule.name]:
                await self._enqueue(schedule, tick)
                self._done[schedule.name] = tick

    async def _enqueue(self, schedule: Schedule, tick: datetime) -> None:
        task = self._registry.get(schedule.job_type)
        job = JobInsertParams(
            id=new_job_id(),
            job_type=task.name,
            queue=task.queue,
            payload=dict(schedule.payload),
            payload_json=schedule.payload_json,
            priority=task.priority,
            max_attempts=task.max_attempts,
            run_at=tick,  # the job is due at its tick, however late it was enqueued
        )
        if self._tracing is None:
            row = await self._claim(schedule, tick, job)
        else:
            with self._tracing.sending_tick(job, schedule.name) as (traced, inserted):
                row = await self._claim(schedule, tick, traced)
                inserted(row is not None)
        if row is None:
            logger.debug(
                "schedule %r: tick %s was enqueued elsewhere", schedule.name, tick.isoformat()
            )
        else:
            logger.info(
                "schedule %r enqueued job %s in queue %s for tick %s",
                schedule.name,
                row.id,
                row.queue,
                tick.isoformat(),
            )

    async def _claim(
        self, schedule: Schedule, tick: datetime, job: JobInsertParams
    ) -> JobRow | None:
        return await self._store.enqueue_tick(
            ScheduleClaimParams(
                name=schedule.name,
                cron=schedule.cron,
                timezone=schedule.timezone,
                tick=tick,
                job=job,
            )
        )

    async def _sleep_until(self, wake: datetime) -> None:
        delay = min(MAX_SLEEP, (wake - self._clock.now()).total_seconds())
        await self._clock.wait_until(self._stopped, self._clock.monotonic() + delay)
