"""fastapi_equeue: a durable job queue inside your FastAPI app, on PostgreSQL or SQLite."""

from fastapi_equeue.api.dependencies import get_queue
from fastapi_equeue.api.router import router
from fastapi_equeue.client import QueueClient, Submission
from fastapi_equeue.errors import (
    ConfigurationError,
    EQueueError,
    InvalidCursor,
    InvalidOption,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
    RateLimited,
    UnknownJobType,
)
from fastapi_equeue.jobs import Job, JobError, JobStatus, Page, QueueStats
from fastapi_equeue.queue import EQueue
from fastapi_equeue.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "EQueue",
    "EQueueError",
    "InvalidCursor",
    "InvalidOption",
    "InvalidPayload",
    "InvalidTransition",
    "Job",
    "JobError",
    "JobNotFound",
    "JobStatus",
    "Page",
    "PayloadTooLarge",
    "QueueClient",
    "QueueStats",
    "RateLimited",
    "Submission",
    "Task",
    "UnknownJobType",
    "__version__",
    "get_queue",
    "router",
]
