"""The dashboard's actions: cancel, retry, pause, resume, limits, bulk actions and submit.

Each is a POST that ``check_action`` lets through only from the dashboard's own pages and for
users who may act, goes through the queue's client like the REST API, and answers with a
message for the page plus ``HX-Trigger: eq:changed``, which refreshes what the page shows.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from fastapi_equeue.config import MAX_QUEUE_NAME
from fastapi_equeue.dashboard.access import check_action, is_read_only
from fastapi_equeue.dashboard.forms import fields_of, payload_from
from fastapi_equeue.dashboard.render import render
from fastapi_equeue.dashboard.route import DashboardRoute
from fastapi_equeue.dashboard.state import Dashboard, get_dashboard
from fastapi_equeue.errors import InvalidOption, InvalidTransition
from fastapi_equeue.jobs import JobStatus

BULK_CAP = 1000
"""A bulk action acts on the newest this many jobs its filter matches, at most."""
_PAGE = 500

router = APIRouter(route_class=DashboardRoute)


async def _allowed(request: Request, dashboard: Dashboard) -> None:
    check_action(
        request, read_only=await is_read_only(request, dashboard.queue.dashboard_read_only)
    )


def _done(
    request: Request, dashboard: Dashboard, text: str, job_id: str | None = None
) -> HTMLResponse:
    dashboard.counts.forget()
    dashboard.throughput.forget()
    changed = {"HX-Trigger": "eq:changed"}
    return render(request, dashboard, "_flash.html", headers=changed, message=text, job_id=job_id)


ActionDashboard = Annotated[Dashboard, Depends(get_dashboard)]


@router.post("/jobs/{job_id}/cancel", name="equeue_dashboard_cancel")
async def cancel(request: Request, job_id: str, dashboard: ActionDashboard) -> HTMLResponse:
    """Cancel one job (a running one stops in its worker shortly after)."""
    await _allowed(request, dashboard)
    job = await dashboard.client.cancel(job_id)
    verb = "is being cancelled" if job.status is JobStatus.PROCESSING else "was cancelled"
    return _done(request, dashboard, f"Job {job.id} {verb}.", job_id=job.id)


@router.post("/jobs/{job_id}/retry", name="equeue_dashboard_retry")
async def retry(request: Request, job_id: str, dashboard: ActionDashboard) -> HTMLResponse:
    """Queue a failed or cancelled job again."""
    await _allowed(request, dashboard)
    job = await dashboard.client.retry(job_id)
    return _done(request, dashboard, f"Job {job.id} was queued again.", job_id=job.id)


@router.post("/queues/{name}/pause", name="equeue_dashboard_pause")
async def pause(request: Request, name: str, dashboard: ActionDashboard) -> HTMLResponse:
    """Pause a queue on every worker."""
    await _allowed(request, dashboard)
    info = await dashboard.client.pause_queue(name)
    return _done(request, dashboard, f"Queue {info.name} is paused.")


@router.post("/queues/{name}/resume", name="equeue_dashboard_resume")
async def resume(request: Request, name: str, dashboard: ActionDashboard) -> HTMLResponse:
    """Resume a paused queue."""
    await _allowed(request, dashboard)
    info = await dashboard.client.resume_queue(name)
    return _done(request, dashboard, f"Queue {info.name} is running.")


@router.post("/queues/{name}/limits", name="equeue_dashboard_limits")
async def limits(
    request: Request,
    name: str,
    dashboard: ActionDashboard,
    concurrency: Annotated[str, Form(max_length=12)] = "",
    rate: Annotated[str, Form(max_length=40)] = "",
) -> HTMLResponse:
    """Set a queue's limits; an empty field means no limit."""
    await _allowed(request, dashboard)
    most: int | None = None
    if concurrency.strip():
        try:
            most = int(concurrency)
        except ValueError:
            raise InvalidOption("concurrency", "must be a whole number, or empty") from None
    info = await dashboard.client.configure_queue(name, concurrency=most, rate=rate.strip() or None)
    shown = f"concurrency {info.concurrency or 'unlimited'}, rate {info.rate or 'unlimited'}"
    return _done(request, dashboard, f"Queue {info.name}: {shown}.")


BulkAction = Literal["retry", "cancel"]


@dataclass(frozen=True, slots=True)
class BulkForm:
    """A bulk action and the filter it acts on (an empty filter field filters nothing)."""

    action: BulkAction
    status: JobStatus | None
    job_type: str | None
    queue: str | None


async def bulk_form(
    action: Annotated[BulkAction, Form()],
    status: Annotated[JobStatus | None, Form()] = None,
    job_type: Annotated[str, Form(max_length=200)] = "",
    queue: Annotated[str, Form(max_length=MAX_QUEUE_NAME)] = "",
) -> BulkForm:
    """The bulk form as posted."""
    return BulkForm(action, status, job_type or None, queue or None)


Bulk = Annotated[BulkForm, Depends(bulk_form)]


@router.post("/bulk/preview", name="equeue_dashboard_bulk_preview")
async def bulk_preview(request: Request, dashboard: ActionDashboard, form: Bulk) -> HTMLResponse:
    """How many jobs the filter matches (up to the cap), with the button that acts on them."""
    await _allowed(request, dashboard)
    matched = await dashboard.client.count(
        status=form.status, job_type=form.job_type, queue=form.queue, cap=BULK_CAP + 1
    )
    return render(
        request,
        dashboard,
        "_bulk.html",
        action=form.action,
        matched=min(matched, BULK_CAP),
        over_cap=matched > BULK_CAP,
        cap=BULK_CAP,
    )


@router.post("/bulk/run", name="equeue_dashboard_bulk_run")
async def bulk_run(request: Request, dashboard: ActionDashboard, form: Bulk) -> HTMLResponse:
    """Retry or cancel the newest jobs the filter matches, up to the cap, one by one; a job
    whose status no longer allows it is skipped."""
    await _allowed(request, dashboard)
    client = dashboard.client
    ids: list[str] = []
    cursor = None
    while len(ids) < BULK_CAP:
        page = await client.list(
            status=form.status,
            job_type=form.job_type,
            queue=form.queue,
            limit=min(_PAGE, BULK_CAP - len(ids)),
            cursor=cursor,
        )
        ids.extend(job.id for job in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    done = 0
    for job_id in ids:
        try:
            if form.action == "retry":
                await client.retry(job_id)
            else:
                await client.cancel(job_id)
        except InvalidTransition:
            continue
        done += 1
    verb = "queued again" if form.action == "retry" else "cancelled"
    skipped = len(ids) - done
    extra = f" ({skipped} skipped: their status did not allow it)" if skipped else ""
    return _done(request, dashboard, f"{done} jobs {verb}{extra}.")


@router.post("/submit", name="equeue_dashboard_submit_job")
async def submit(request: Request, dashboard: ActionDashboard) -> HTMLResponse:
    """Submit a job of the chosen type with the payload the form describes."""
    await _allowed(request, dashboard)
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    job_type = values.pop("job_type", "")
    task = dashboard.queue.registry.get(job_type)  # UnknownJobType: 422
    payload = payload_from(fields_of(task.payload_model.model_json_schema()), values)
    submission = await dashboard.client.submit(job_type, payload)
    return _done(
        request, dashboard, f"Job {submission.job.id} submitted.", job_id=submission.job.id
    )
