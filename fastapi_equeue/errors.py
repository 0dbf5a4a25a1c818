"""The exceptions fastapi_equeue raises; each says what was wrong and with what."""

from fastapi_equeue.jobs import JobStatus


class EQueueError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(EQueueError):
    """The queue is set up wrongly (a bad option, a missing lifespan, an unsupported URL)."""


class UnknownJobType(EQueueError):
    """No task is registered under this job type."""

    def __init__(self, job_type: str) -> None:
        super().__init__(f"unknown job type {job_type!r}: no task is registered under this name")
        self.job_type = job_type


class InvalidPayload(EQueueError):
    """The payload does not match the task's parameters; ``errors`` says where."""

    def __init__(self, job_type: str, message: str, errors: list[dict[str, object]]) -> None:
        super().__init__(f"invalid payload for {job_type!r}: {message}")
        self.job_type = job_type
        self.errors = errors


class PayloadTooLarge(EQueueError):
    """The payload's JSON encoding is longer than ``max_payload_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes of JSON; the limit is {limit}")
        self.size = size
        self.limit = limit


class JobNotFound(EQueueError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class InvalidTransition(EQueueError):
    """The job's current status does not allow this action; ``status`` is that status."""

    def __init__(self, job_id: str, action: str, status: JobStatus) -> None:
        super().__init__(f"cannot {action} job {job_id}: it is {status}")
        self.job_id = job_id
        self.action = action
        self.status = status


class InvalidCursor(EQueueError, ValueError):
    """The pagination cursor was not issued by ``list``."""


class InvalidOption(EQueueError, ValueError):
    """An enqueue or list option is out of range or of the wrong type; ``field`` names it."""

    def __init__(self, field: str, message: str, *, location: str = "body") -> None:
        super().__init__(f"invalid {field}: {message}")
        self.field = field
        self.location = location
        """Where an HTTP request carries the option: ``body`` or ``query``."""


class UnknownDependency(InvalidOption):
    """A job named in ``depends_on`` does not exist (or was pruned); nothing was stored."""

    def __init__(self, job_ids: list[str]) -> None:
        shown = ", ".join(job_ids[:5]) + (", ..." if len(job_ids) > 5 else "")
        super().__init__("depends_on", f"no job with id {shown}")
        self.job_ids = job_ids


class RateLimited(EQueueError):
    """Too many submissions from one client; ``retry_after`` is in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many job submissions; retry after {retry_after}s")
        self.retry_after = retry_after


class DatabaseUnavailable(EQueueError, ConnectionError):
    """The job database cannot be reached yet (the queue started while it was down); the
    queue keeps trying, and the API answers 503 meanwhile."""
