"""What operators read about a queue beyond its jobs: the worker processes, how many jobs ended
per minute, and what waits to run. ``QueueClient.workers()``, ``QueueClient.throughput()`` and
``QueueClient.backlog()`` return them."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class WorkerInfo(BaseModel):
    """A worker process that registered itself: in an app's lifespan or standalone."""

    model_config = ConfigDict(frozen=True)

    id: str
    hostname: str
    pid: int
    queues: list[str] | None
    """The queues it serves; ``None``: every queue."""
    concurrency: int
    started_at: datetime
    last_beat_at: datetime
    running: int
    """Jobs the database holds as running on it."""
    alive: bool
    """It beat within ``stalled_after``; a worker that did not is about to be declared lost."""


class ThroughputPoint(BaseModel):
    """The jobs that ended completed and failed during one minute."""

    model_config = ConfigDict(frozen=True)

    minute: datetime
    completed: int
    failed: int


class QueueBacklog(BaseModel):
    """What one queue holds that could run: listed for a queue with such jobs or with settings."""

    model_config = ConfigDict(frozen=True)

    queue: str
    paused: bool
    backlog: int
    """Queued and retrying jobs that are not waiting on dependencies, due or not."""
    oldest_age: float | None
    """Seconds the oldest due one has waited; ``None``: none is due."""


class Backlog(BaseModel):
    """Every queue's backlog, and how many worker processes are alive."""

    model_config = ConfigDict(frozen=True)

    queues: list[QueueBacklog]
    workers: int
