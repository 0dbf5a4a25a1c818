"""The claim loop of one queue: claim as many of its due jobs as there are free slots, start
each, claim again.

It sleeps until a wake-up (a notification for its queue, a freed slot while it has work, a
change of its queue's settings) or ``poll_interval`` of the clock, whichever comes first, so a
lost notification costs at most one poll. The claim enforces the queue's settings in the
database; the producer only avoids asking when it knows the answer: a paused queue is not
claimed from at all, and a queue held back by its limits waits for a slot of its own to free
or for the next poll, never for every enqueue.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from fastapi_equeue.backend import Claim, JobClaimParams
from fastapi_equeue.clock import Clock
from fastapi_equeue.runtime.attempts import Attempts, Held
from fastapi_equeue.runtime.completer import Completer
from fastapi_equeue.runtime.executor import Executor
from fastapi_equeue.runtime.service import back_off
from fastapi_equeue.store import Store

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 10.0
GATHER_WINDOW = 0.002
"""A claim costs a round trip whether it brings one job or fifty. While jobs run, a producer
waits up to this long for half its slots to be free before claiming for fewer."""


@dataclass(frozen=True, slots=True)
class Claiming:
    """What every producer of a runtime shares: where it claims, the slots it fills, who runs
    and records the jobs, and how often it looks (in burst mode, until nothing is due)."""

    store: Store
    attempts: Attempts
    executor: Executor
    completer: Completer
    clock: Clock
    worker_id: str
    poll_interval: float
    burst: bool = False


class Producer:
    """Claims and starts the jobs of one queue in its runtime's free slots."""

    def __init__(self, queue: str, shared: Claiming) -> None:
        self.queue = queue
        self._store = shared.store
        self._attempts = shared.attempts
        self._executor = shared.executor
        self._completer = shared.completer
        self._clock = shared.clock
        self._worker_id = shared.worker_id
        self._poll_interval = shared.poll_interval
        self._burst = shared.burst
        self._batch = max(1, shared.attempts.concurrency // 2)
        self._wake = asyncio.Event()
        self._announced = asyncio.Event()
        self._room_changed = False
        self._stopped = asyncio.Event()
        self.paused = False
        self.awaiting_settings = False
        """Whether it was started (by a notification) before its queue's settings were read:
        until they are, it claims as if its queue had a limit, with the claim that enforces
        whatever settings the queue has, and learns from its answer."""
        self.limited = False
        """Whether its queue has a limit, as last read: its claims then enforce the queue's
        settings. Otherwise they are the cheaper claim, which takes nothing from a queue that
        has settings after all (until the next read of them says so)."""
        self.held_back = False
        """Whether its queue's limits held its last claim back: only an attempt of its own
        queue ending (or the next poll) can make room, not new jobs nor other slots."""
        self.hungry = False
        """Whether any freed slot could let it claim: it found none free, or its last claim
        filled every slot it asked for (more may be due)."""
        self.claimed_total = 0
        self.idle_claims = 0
        """Claims in a row that found nothing: an idle queue's producer may be retired."""

    def wake(self) -> None:
        """Look for work now: something changed that may make room (a slot, a job of its queue
        ending, the queue's settings)."""
        self._room_changed = True
        self._wake.set()

    def jobs_available(self) -> None:
        """New jobs were announced: look for them now, unless the queue is paused or held back
        by its limits, where new jobs make no room."""
        self._announced.set()
        if not self.paused and not self.held_back:
            self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; attempts already started go on."""
        self._stopped.set()
        self._wake.set()
        self._announced.set()

    async def run(self) -> None:
        """Claim and start until stopped (in burst mode: until nothing is due and nothing of
        this queue runs here)."""
        failures = 0
        while not self._stopped.is_set():
            self._wake.clear()
            self._room_changed = False
            # A poll is due a poll interval after this round began, however long its claim took.
            poll_at = self._clock.monotonic() + self._poll_interval
            if self.paused:
                await self._clock.wait_until(self._wake, poll_at)
                continue
            wanted = await self._reserve()
            if wanted == 0:
                self.hungry = True
                self.held_back = False
                await self._clock.wait_until(self._wake, poll_at)
                continue
            try:
                claim = await self._claim(wanted)
                failures = 0
            except Exception as exc:
                self._attempts.release(wanted)
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    logger.warning(
                        "claiming jobs of queue %s failed (%s: %s); retrying",
                        self.queue,
                        type(exc).__name__,
                        exc,
                    )
                # New jobs announced cut the wait short: after an outage, the listener's
                # reconnect announces that any queue may have work, and the claim is tried at
                # once, however long the poll interval.
                self._announced.clear()
                await back_off(
                    failures,
                    base=min(self._poll_interval, FIRST_BACKOFF),
                    cap=MAX_BACKOFF,
                    stop=self._announced,
                )
                continue
            claimed = claim.jobs
            self._attempts.release(wanted - len(claimed))
            for job in claimed:
                self._attempts.launch(job, self._attempt)
            self.claimed_total += len(claimed)
            self.idle_claims = 0 if claimed else self.idle_claims + 1
            if self._burst and not claimed and not self._attempts.running_in(self.queue):
                return
            if len(claimed) == wanted:
                # Every slot asked for was filled and more may be due: look again as soon as
                # one frees.
                self.held_back = False
                self.hungry = True
                await asyncio.sleep(0)
                if self._attempts.free > 0:
                    continue
            else:
                # Short: the queue had no more due, or its settings held the claim back. Held
                # back, only a slot of its own freeing (or the next poll) can make room: new
                # jobs' notifications would only bring empty claims.
                self.held_back = claim.room < wanted and len(claimed) >= claim.room
                self.hungry = False
                if self.held_back and not self._room_changed and not self._stopped.is_set():
                    # New jobs announced while the claim ran make no room.
                    self._wake.clear()
            await self._clock.wait_until(self._wake, poll_at)

    async def _reserve(self) -> int:
        """Reserve slots for a claim: all free ones, waiting briefly for half of them while
        attempts run."""
        wanted = self._attempts.reserve(self._attempts.free)
        if 0 < wanted < self._batch and self._attempts.busy:
            self.hungry, self.held_back = True, False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + GATHER_WINDOW
            while wanted < self._batch and self._attempts.busy and loop.time() < deadline:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._wake.wait()
                if self._stopped.is_set():
                    break
                wanted += self._attempts.reserve(self._attempts.free)
        return wanted

    async def _claim(self, limit: int) -> Claim:
        with self._attempts.claiming():
            return await self._store.claim(
                JobClaimParams(
                    worker_id=self._worker_id,
                    queue=self.queue,
                    limit=limit,
                    limited=self.limited or self.awaiting_settings,
                )
            )

    async def _attempt(self, held: Held) -> None:
        attempt = await self._executor.run(held.job, held.stop_reason)
        self._completer.submit(attempt)
