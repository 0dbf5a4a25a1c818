"""``Producers``: which queues a runtime serves, with one producer for each that has work.

A runtime given ``queues`` serves exactly those. Without, it serves every queue that has
claimable jobs: it finds them on start, at every poll, and from the notifications of new jobs,
and retires the producer of a queue that has gone idle. It also keeps every served queue's
settings (read at every poll, and at once when a queue's settings change), so that a paused
queue's producer does not claim at all. Notifications and freed slots wake the producers they
concern.
"""

import asyncio
import logging
from collections.abc import Callable

from fastapi_equeue.backend import EVERY_QUEUE, Notification, QueueSettingsRow
from fastapi_equeue.runtime.producer import Claiming, Producer

logger = logging.getLogger(__name__)

RETIRE_AFTER = 3
"""Claims in a row that found nothing before an idle queue's producer is retired (when the
runtime serves every queue)."""


class Producers:
    """The producers of one runtime."""

    name = "producers"

    def __init__(self, shared: Claiming, *, queues: tuple[str, ...] | None) -> None:
        self._shared = shared
        self._store = shared.store
        self._attempts = shared.attempts
        self._clock = shared.clock
        self._queues = queues
        self._poll_interval = shared.poll_interval
        self._burst = shared.burst
        self._producers: dict[str, Producer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._found: list[QueueSettingsRow] = []
        self._settings: dict[str, QueueSettingsRow] = {}
        self._refresh_now = asyncio.Event()
        self._stopped = asyncio.Event()
        self._unsubscribe: Callable[[], None] = lambda: None
        self._retired_claims = 0

    @property
    def claimed_total(self) -> int:
        """Jobs claimed by this runtime so far."""
        return self._retired_claims + sum(p.claimed_total for p in self._producers.values())

    async def start(self) -> None:
        """Start listening, and find the queues to serve and their settings."""
        await self._store.notifier.start()
        self._unsubscribe = self._store.notifier.subscribe(self._on_notification)
        self._attempts.on_freed(self._on_freed)
        self._attempts.on_written(self._on_written)
        try:
            self._found = await self._store.queues_to_serve(self._queues)
        except Exception as exc:
            # Polling finds them once the database answers.
            logger.warning("finding queues failed (%s: %s)", type(exc).__name__, exc)

    async def run(self) -> None:
        """Run the producers until stopped (in burst mode: until every one has drained)."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._apply(self._found)
                if self._burst:
                    await asyncio.gather(*self._tasks.values())
                    return
                while not self._stopped.is_set():
                    refresh_at = self._clock.monotonic() + self._poll_interval
                    await self._clock.wait_until(self._refresh_now, refresh_at)
                    self._refresh_now.clear()
                    if not self._stopped.is_set():
                        await self._refresh()
                for producer in self._producers.values():
                    producer.stop()
        finally:
            self._group = None
            self._unsubscribe()

    def stop(self) -> None:
        """Stop claiming; the producers' running attempts go on."""
        self._stopped.set()
        self._refresh_now.set()
        for producer in self._producers.values():
            producer.stop()

    async def _refresh(self) -> None:
        try:
            rows = await self._store.queues_to_serve(self._queues)
        except Exception as exc:
            logger.warning("reading queue settings failed (%s: %s)", type(exc).__name__, exc)
            return
        self._apply(rows)
        if self._queues is None:
            self._retire_idle({row.name for row in rows if row.claimable})

    def _apply(self, rows: list[QueueSettingsRow]) -> None:
        served = self._queues if self._queues is not None else ()
        self._settings = {row.name: row for row in rows}
        names = [*served, *(row.name for row in rows if row.claimable and row.name not in served)]
        for name in names:
            if name not in self._producers:
                self._spawn(name)
        # Every producer, not only those of queues with work: a queue paused or limited while
        # it had nothing due must not be claimed from as before when its next job comes.
        for producer in self._producers.values():
            if self._settle(producer):
                producer.wake()

    def _settle(self, producer: Producer) -> bool:
        """Give ``producer`` its queue's settings as last read; whether it should look again."""
        row = self._settings.get(producer.queue)
        paused = bool(row and row.paused)
        limited = bool(row and (row.concurrency is not None or row.rate_limit is not None))
        changed = producer.awaiting_settings or (paused, limited) != (
            producer.paused,
            producer.limited,
        )
        producer.paused, producer.limited = paused, limited
        producer.awaiting_settings = False
        if changed:
            producer.held_back = False
        return changed and not paused

    def _spawn(self, name: str, *, settled: bool = True) -> Producer:
        """A producer for ``name``, given its settings as last read if ``settled`` (just read);
        otherwise it awaits the next read."""
        producer = Producer(name, self._shared)
        self._producers[name] = producer
        if settled:
            self._settle(producer)
        else:
            producer.awaiting_settings = True
        if self._group is not None:
            self._tasks[name] = self._group.create_task(producer.run(), name=f"equeue-{name}")
        return producer

    def _retire_idle(self, active: set[str]) -> None:
        for name, producer in tuple(self._producers.items()):
            idle = producer.idle_claims >= RETIRE_AFTER and not self._attempts.running_in(name)
            if name not in active and idle:
                producer.stop()
                self._retired_claims += producer.claimed_total
                del self._producers[name]
                self._tasks.pop(name, None)

    def _on_notification(self, notification: Notification) -> None:
        if notification.kind == "available":
            for name in notification.values:
                if name == EVERY_QUEUE:
                    self._wake_all()
                    continue
                producer = self._producers.get(name)
                if producer is not None:
                    producer.jobs_available()
                elif self._queues is None and self._group is not None and not self._burst:
                    # A queue not seen before: its settings are read again at once. Until then
                    # its producer trusts no earlier read (this notification can overtake the
                    # refresh that a change of them asked for).
                    self._spawn(name, settled=False)
                    self._refresh_now.set()
        elif notification.kind == "queue":
            self._refresh_now.set()

    def _on_freed(self) -> None:
        for producer in self._producers.values():
            if producer.hungry and not producer.paused:
                producer.wake()

    def _on_written(self, queue: str) -> None:
        # A job of a queue held back by its limits is no longer running: there may be room.
        producer = self._producers.get(queue)
        if producer is not None and producer.held_back and not producer.paused:
            producer.wake()

    def _wake_all(self) -> None:
        for producer in self._producers.values():
            if not producer.paused:
                producer.held_back = False
                producer.wake()
