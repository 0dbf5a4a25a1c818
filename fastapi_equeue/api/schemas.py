"""Request and response bodies of the ``/jobs`` API (pydantic, the API's boundary)."""

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from fastapi_equeue.config import (
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY,
    MAX_IDEMPOTENCY_KEY,
    MAX_PRIORITY,
    MAX_QUEUE_NAME,
)
from fastapi_equeue.jobs import Job, JobStatus


class JobOptions(BaseModel):
    """The options of ``POST /jobs`` besides ``job_type`` and ``payload``."""

    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(None, min_length=1, max_length=MAX_QUEUE_NAME)
    # Strict: pydantic would otherwise read true as 1 and "5" as 5, which the client refuses.
    priority: int | None = Field(None, ge=-MAX_PRIORITY, le=MAX_PRIORITY, strict=True)
    delay: float | None = Field(None, ge=0, le=MAX_DELAY, allow_inf_nan=False, strict=True)
    run_at: AwareDatetime | None = None
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS_LIMIT, strict=True)
    idempotency_key: str | None = Field(None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY)

    @field_validator("run_at", mode="before")
    @classmethod
    def _run_at_is_text(cls, value: object) -> object:
        # A bare number would be read as a Unix time: almost certainly a mistake in an API.
        if value is not None and not isinstance(value, str):
            raise ValueError("run_at must be an ISO 8601 date-time with a timezone")
        return value


class JobCreate(JobOptions):
    """``POST /jobs``: a job of any registered type (``/docs`` shows one schema per type)."""

    job_type: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)


class JobResult(BaseModel):
    """``GET /jobs/{id}/result`` of a completed job."""

    id: str
    status: JobStatus
    result: Any


class JobPage(BaseModel):
    """``GET /jobs``: newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[Job]
    next_cursor: str | None


class ErrorBody(BaseModel):
    """Every error but validation errors: ``{"detail": "..."}``."""

    detail: str


class ConflictBody(BaseModel):
    """409: the job's status does not allow what was asked; ``status`` is that status."""

    detail: str
    status: JobStatus


class ValidationErrorItem(BaseModel):
    """One reason for a 422, FastAPI-style."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """422: ``detail`` lists what was wrong and where."""

    detail: list[ValidationErrorItem]
