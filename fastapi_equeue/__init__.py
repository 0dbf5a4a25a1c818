"""fastapi_equeue: a durable job queue inside your FastAPI app, on PostgreSQL or SQLite."""

import importlib
import typing

from fastapi_equeue.client import QueueClient, Submission
from fastapi_equeue.context import JobContext
from fastapi_equeue.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    EQueueError,
    InvalidCursor,
    InvalidOption,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
    RateLimited,
    UnknownDependency,
    UnknownJobType,
)
from fastapi_equeue.jobs import Job, JobError, JobStatus, Page, QueueStats
from fastapi_equeue.options import EnqueueOptions
from fastapi_equeue.periodic import Schedule, ScheduleInfo
from fastapi_equeue.queue import EQueue
from fastapi_equeue.queues import QueueInfo
from fastapi_equeue.tasks import Task

if typing.TYPE_CHECKING:
    from fastapi_equeue.api.dependencies import get_queue
    from fastapi_equeue.api.router import router

__version__ = "0.2.0"

# The web side loads on first use: a standalone worker never imports FastAPI (about 10 MiB).
_LAZY = {"get_queue": "fastapi_equeue.api.dependencies", "router": "fastapi_equeue.api.router"}

if not typing.TYPE_CHECKING:  # for type checkers, the imports above are the truth

    def __getattr__(name: str) -> typing.Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'fastapi_equeue' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "EQueue",
    "EQueueError",
    "EnqueueOptions",
    "InvalidCursor",
    "InvalidOption",
    "InvalidPayload",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobError",
    "JobNotFound",
    "JobStatus",
    "Page",
    "PayloadTooLarge",
    "QueueClient",
    "QueueInfo",
    "QueueStats",
    "RateLimited",
    "Schedule",
    "ScheduleInfo",
    "Submission",
    "Task",
    "UnknownDependency",
    "UnknownJobType",
    "__version__",
    "get_queue",
    "router",
]
