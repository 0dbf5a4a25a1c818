"""``router``: the ``/jobs`` REST API, mounted with ``app.include_router(equeue.router)``.

Handlers are thin: they call the app's ``QueueClient`` and return what it returns. Errors become
responses in one table (``http_errors``); access control is whatever dependencies the host
passes to ``include_router``.
"""

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fastapi_equeue import dashboard
from fastapi_equeue.api.body import read_json_object
from fastapi_equeue.api.dependencies import get_equeue, get_queue
from fastapi_equeue.api.http_errors import EQueueRoute
from fastapi_equeue.api.openapi import SUBMIT_OPERATION
from fastapi_equeue.api.schemas import (
    ConflictBody,
    ErrorBody,
    JobCreate,
    JobResult,
    QueueLimits,
    ValidationErrorBody,
)
from fastapi_equeue.client import QueueClient
from fastapi_equeue.config import MAX_QUEUE_NAME
from fastapi_equeue.errors import InvalidOption, InvalidTransition, JobNotFound
from fastapi_equeue.jobs import Job, JobStatus, Page, QueueStats
from fastapi_equeue.metrics import INSTALL_HINT
from fastapi_equeue.options import EnqueueOptions
from fastapi_equeue.periodic import ScheduleInfo
from fastapi_equeue.queue import EQueue
from fastapi_equeue.queues import QueueInfo

MAX_RESULT_WAIT = 60.0
# Room for job_type and the options around a payload of max_payload_bytes.
BODY_OVERHEAD = 16 * 1024
LIMITS_BODY = 4096
_LIST_PARAMETERS = frozenset({"status", "job_type", "queue", "limit", "cursor"})

Queue = Annotated[QueueClient, Depends(get_queue)]
EQueueDep = Annotated[EQueue, Depends(get_equeue)]

_NOT_FOUND = {"model": ErrorBody, "description": "No job has this id (or the id is malformed)."}
_CONFLICT = {"model": ConflictBody, "description": "The job's status does not allow this."}
_INVALID = {"model": ValidationErrorBody, "description": "Invalid input."}

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=EQueueRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Job,
    operation_id=SUBMIT_OPERATION,
    summary="Submit a job",
    responses={
        200: {"model": Job, "description": "An idempotent repeat: the job holding the key."},
        413: {"model": ErrorBody, "description": "The payload (or the body) is too large."},
        422: _INVALID,
        429: {"model": ErrorBody, "description": "Too many submissions: see Retry-After."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": JobCreate.model_json_schema()}},
        }
    },
)
async def submit_job(request: Request, response: Response, queue: EQueueDep) -> Job:
    """Validate the payload against the job type's parameters, then store the job.

    Answers 201 with ``Location``; an ``idempotency_key`` that a job already holds answers 200
    with that job. Nothing is stored when the answer is an error.
    """
    if queue.submit_limiter is not None:
        await queue.submit_limiter.check(request)
    data = await read_json_object(request, queue.config.max_payload_bytes + BODY_OVERHEAD)
    job_type = data.pop("job_type", None)
    payload = data.pop("payload", None)
    options = EnqueueOptions.from_mapping(data, json=True)
    if not isinstance(job_type, str):
        raise RequestValidationError(
            [{"loc": ("body", "job_type"), "msg": "Field required (a string)", "type": "missing"}]
        )
    submission = await queue.client.submit(job_type, payload, options)
    if submission.created:
        path = request.app.url_path_for("equeue_get_job", job_id=submission.job.id)
        response.headers["Location"] = request.scope.get("root_path", "") + path
    else:
        response.status_code = status.HTTP_200_OK
    return submission.job


@router.get("/stats", response_model=QueueStats, summary="Queue statistics")
async def job_stats(q: Queue) -> QueueStats:
    """Jobs per status and queue, the oldest waiting job's age, and last minute's outcomes."""
    return await q.stats()


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "The metrics in Prometheus text format (OpenMetrics if asked).",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        },
        501: {"model": ErrorBody, "description": "prometheus_client is not installed."},
    },
)
async def job_metrics(request: Request, queue: EQueueDep) -> Response:
    """Jobs enqueued and finished (by outcome), attempt run times and queue waits, counted by
    this process; every queue's backlog, oldest waiting job and pause, and live workers, read
    from the database (cached a few seconds). Needs ``fastapi-equeue[metrics]``."""
    queue_metrics = queue.metrics
    if queue_metrics is None:
        return JSONResponse({"detail": INSTALL_HINT}, status_code=status.HTTP_501_NOT_IMPLEMENTED)
    body, content_type = await queue_metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get("/schedules", response_model=list[ScheduleInfo], summary="List periodic jobs")
async def list_schedules(q: Queue) -> list[ScheduleInfo]:
    """This app's periodic jobs (``queue.periodic``), by name: cron, time zone, job type, the
    next run (UTC) and the tick and job id of the last one."""
    return await q.schedules()


@router.get("/queues", response_model=list[QueueInfo], summary="List queues")
async def list_queues(q: Queue) -> list[QueueInfo]:
    """Every queue that holds jobs or has settings: paused or not, its limits, its jobs per
    status. A queue comes into being by use (a job enqueued into it, a pause, a limit)."""
    return await q.queues()


@router.post(
    "/queues/{name}/pause",
    response_model=QueueInfo,
    summary="Pause a queue",
    responses={422: _INVALID},
)
async def pause_queue(name: str, q: Queue) -> QueueInfo:
    """The queue accepts jobs and starts none, in every worker, within one poll interval; jobs
    already running finish."""
    return await q.pause_queue(name)


@router.post(
    "/queues/{name}/resume",
    response_model=QueueInfo,
    summary="Resume a queue",
    responses={422: _INVALID},
)
async def resume_queue(name: str, q: Queue) -> QueueInfo:
    """The queue starts jobs again."""
    return await q.resume_queue(name)


@router.patch(
    "/queues/{name}",
    response_model=QueueInfo,
    summary="Set a queue's limits",
    responses={422: _INVALID},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": QueueLimits.model_json_schema()}},
        }
    },
)
async def configure_queue(name: str, request: Request, q: Queue) -> QueueInfo:
    """Set ``concurrency`` (the most of its jobs running at once over every worker) and
    ``rate`` (``"N/second"``, ``"N/minute"`` or ``"N/hour"``: the most started per period
    over every worker); ``null`` removes a limit, a field left out keeps its value. Every
    worker obeys within one poll interval."""
    data = await read_json_object(request, LIMITS_BODY)
    unknown = sorted(set(data) - set(QueueLimits.model_fields))
    if unknown:
        raise InvalidOption(unknown[0][:100], "is not a queue setting")
    return await q.configure_queue(name, **{key: data[key] for key in data})


@router.get(
    "",
    response_model=Page,
    summary="List jobs, newest first",
    responses={422: _INVALID},
)
async def list_jobs(
    request: Request,
    q: Queue,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    job_type: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    queue: Annotated[str | None, Query(min_length=1, max_length=MAX_QUEUE_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page:
    """A page of jobs; pass ``next_cursor`` back as ``cursor`` for the next one."""
    unknown = sorted(set(request.query_params) - _LIST_PARAMETERS)
    if unknown:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": "Unknown filter", "type": "extra_forbidden"}
                for name in unknown
            ]
        )
    page = await q.list(
        status=status_filter, job_type=job_type, queue=queue, limit=limit, cursor=cursor
    )
    return page


# Before "/{job_id}", which would otherwise take "dashboard" for an id.
router.include_router(dashboard.router)


@router.get(
    "/{job_id}",
    response_model=Job,
    name="equeue_get_job",
    summary="Get a job",
    responses={404: _NOT_FOUND},
)
async def get_job(job_id: str, q: Queue) -> Job:
    """The job with its status, attempts, result and error history."""
    job = await q.get(job_id)
    if job is None:
        raise JobNotFound(job_id[:100])
    return job


@router.get(
    "/{job_id}/result",
    response_model=JobResult,
    summary="Get a job's result, waiting for it if asked",
    responses={404: _NOT_FOUND, 409: _CONFLICT, 422: _INVALID},
)
async def get_result(
    job_id: str,
    q: Queue,
    wait: Annotated[float, Query(ge=0, le=MAX_RESULT_WAIT, allow_inf_nan=False)] = 0,
) -> JobResult:
    """200 with the result once the job is completed; 409 with its status otherwise.

    ``wait`` (seconds, at most 60) holds the request until the job finishes or the time is up;
    it is woken by the job's completion, not by polling, on PostgreSQL.
    """
    job = await q.get(job_id)
    if job is None:
        raise JobNotFound(job_id[:100])
    if not job.status.is_final and wait > 0:
        with contextlib.suppress(TimeoutError):
            job = await q.wait(job.id, timeout=wait)
    if job.status is not JobStatus.COMPLETED:
        raise InvalidTransition(job.id, "read the result of", job.status)
    return JobResult(id=job.id, status=job.status, result=job.result)


@router.post(
    "/{job_id}/cancel",
    response_model=Job,
    summary="Cancel a job",
    responses={404: _NOT_FOUND, 409: _CONFLICT},
)
async def cancel_job(job_id: str, q: Queue) -> Job:
    """Queued and retrying jobs end ``cancelled`` at once; a running job is cancelled in its
    worker and ends ``cancelled`` shortly after. Finished jobs answer 409."""
    return await q.cancel(job_id)


@router.post(
    "/{job_id}/retry",
    response_model=Job,
    summary="Retry a failed or cancelled job",
    responses={404: _NOT_FOUND, 409: _CONFLICT},
)
async def retry_job(job_id: str, q: Queue) -> Job:
    """Put a ``failed`` or ``cancelled`` job back to ``queued`` with its attempts reset."""
    return await q.retry(job_id)


__all__ = ["router"]
