"""Request and response bodies of the ``/jobs`` API (pydantic, the API's boundary)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from fastapi_equeue.jobs import JobStatus
from fastapi_equeue.options import OPTIONS
from fastapi_equeue.queues import MAX_CONCURRENCY, RATE_PATTERN

OPTIONS_SCHEMA: dict[str, Any] = {name: option.schema for name, option in OPTIONS.items()}


JobOptions: type[BaseModel] = create_model(
    "JobOptions",
    __config__=ConfigDict(extra="forbid"),
    __doc__="The options of ``POST /jobs`` besides ``job_type`` and ``payload``.",
    **OPTIONS_SCHEMA,
)
"""Built from the enqueue options' own definitions (``fastapi_equeue.options``), which also
check every value: this model documents the body, and the bounds come from the same place."""


class JobCreate(JobOptions):
    """``POST /jobs``: a job of any registered type (``/docs`` shows one schema per type)."""

    job_type: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)


class QueueLimits(BaseModel):
    """``PATCH /jobs/queues/{name}``: a field left out keeps its value, ``null`` removes it."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(
        None,
        ge=1,
        le=MAX_CONCURRENCY,
        description="The most of the queue's jobs processing at once, over all workers.",
    )
    rate: str | None = Field(
        None,
        pattern=RATE_PATTERN,
        examples=["10/second", "600/minute"],
        description="The most of the queue's jobs started per second, minute or hour.",
    )


class JobResult(BaseModel):
    """``GET /jobs/{id}/result`` of a completed job."""

    id: str
    status: JobStatus
    result: Any


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
