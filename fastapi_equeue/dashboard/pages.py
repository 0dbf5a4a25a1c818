"""The dashboard's pages: each a GET that reads through the queue's client and renders one
template. Lists read one keyset page of an index; only the overview and the queues page count
the whole table, through the dashboard's cache."""

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from fastapi_equeue.config import MAX_QUEUE_NAME
from fastapi_equeue.dashboard.access import is_read_only
from fastapi_equeue.dashboard.charts import throughput_chart
from fastapi_equeue.dashboard.forms import fields_of
from fastapi_equeue.dashboard.render import render
from fastapi_equeue.dashboard.route import DashboardRoute
from fastapi_equeue.dashboard.state import Dashboard, get_dashboard
from fastapi_equeue.errors import JobNotFound
from fastapi_equeue.insight import QueueBacklog
from fastapi_equeue.jobs import JobStatus, parse_job_id

PAGE_SIZE = 50
ACTIVE_SHOWN = 200
FAILURES_SHOWN = 20

DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]

router = APIRouter(route_class=DashboardRoute)


@dataclass(frozen=True, slots=True)
class QueueLine:
    """A queue on the overview: its jobs per status (``None`` while they are being counted)
    and what it holds that could run (``None``: nothing, and no settings)."""

    name: str
    counts: dict[JobStatus, int] | None
    backlog: QueueBacklog | None


async def _read_only(request: Request, dashboard: Dashboard) -> bool:
    return await is_read_only(request, dashboard.queue.dashboard_read_only)


@router.get("", name="equeue_dashboard_overview", response_class=HTMLResponse)
async def overview(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    """Counts per queue and status, the backlog and its oldest job's age, and a chart of the
    last hour's completed and failed jobs per minute."""
    client = dashboard.client
    (queues, counted_ago), (points, charted_ago), snapshot, workers = await asyncio.gather(
        dashboard.counts.get(), dashboard.throughput.get(), client.backlog(), client.workers()
    )
    backlog = {row.queue: row for row in snapshot.queues}
    counts = {queue.name: queue.counts for queue in queues or ()}
    lines = [
        QueueLine(name, counts.get(name), backlog.get(name))
        for name in sorted(counts.keys() | backlog.keys())
    ]
    ages = [row.oldest_age for row in backlog.values() if row.oldest_age is not None]
    return render(
        request,
        dashboard,
        "overview.html",
        page="overview",
        lines=lines,
        counting=queues is None,
        counted_ago=counted_ago,
        waiting=sum(row.backlog for row in backlog.values()),
        running=sum(w.running for w in workers),
        oldest_age=max(ages) if ages else None,
        chart=throughput_chart(points) if points is not None else None,
        charted_ago=charted_ago,
        workers_alive=sum(1 for w in workers if w.alive),
        statuses=list(JobStatus),
    )


@router.get("/queues", name="equeue_dashboard_queues", response_class=HTMLResponse)
async def queues_page(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    """Every queue: paused or not, its limits, its jobs per status, and their controls. The
    settings are read afresh for every page; the counts through the dashboard's budget."""
    (counted, counted_ago), settings = await asyncio.gather(
        dashboard.counts.get(), dashboard.client.queue_settings()
    )
    fresh = {info.name: info for info in settings}
    counts = {info.name: info.counts for info in counted or ()}
    queues = [
        fresh.get(name, info).model_copy(update={"counts": counts.get(name, {})})
        for name, info in sorted({**{i.name: i for i in counted or ()}, **fresh}.items())
    ]
    return render(
        request,
        dashboard,
        "queues.html",
        page="queues",
        queues=queues,
        counting=counted is None,
        counted_ago=counted_ago,
        statuses=list(JobStatus),
        read_only=await _read_only(request, dashboard),
    )


@router.get("/active", name="equeue_dashboard_active", response_class=HTMLResponse)
async def active(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    """The running jobs: for how long each has run, and its progress."""
    page = await dashboard.client.list(status=JobStatus.PROCESSING, limit=ACTIVE_SHOWN)
    return render(
        request,
        dashboard,
        "active.html",
        page="active",
        jobs=page.items,
        more=page.next_cursor is not None,
        read_only=await _read_only(request, dashboard),
    )


@router.get("/failures", name="equeue_dashboard_failures", response_class=HTMLResponse)
async def failures(
    request: Request,
    dashboard: DashboardDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    """The failed jobs, newest first, with each attempt's error and traceback."""
    page = await dashboard.client.list(status=JobStatus.FAILED, limit=FAILURES_SHOWN, cursor=cursor)
    return render(
        request,
        dashboard,
        "failures.html",
        page="failures",
        jobs=page.items,
        next_cursor=page.next_cursor,
        read_only=await _read_only(request, dashboard),
    )


@router.get("/jobs", name="equeue_dashboard_jobs", response_class=HTMLResponse)
async def jobs(
    request: Request,
    dashboard: DashboardDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    job_type: Annotated[str | None, Query(max_length=200)] = None,
    queue: Annotated[str | None, Query(max_length=MAX_QUEUE_NAME)] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    """Jobs, newest first, filtered by status, type and queue, a page at a time by keyset; or
    the one job whose id is ``q``. An empty filter (the form's "any") filters nothing."""
    client = dashboard.client
    status, job_type, queue = status or None, job_type or None, queue or None
    q = (q or "").strip() or None
    searched = None
    if q is not None:
        job_id = parse_job_id(q)
        job = await client.get(job_id) if job_id is not None else None
        items, next_cursor, searched = ([job] if job else []), None, q
    else:
        page = await client.list(
            status=status, job_type=job_type, queue=queue, limit=PAGE_SIZE, cursor=cursor
        )
        items, next_cursor = page.items, page.next_cursor
    return render(
        request,
        dashboard,
        "jobs.html",
        page="jobs",
        jobs=items,
        next_cursor=next_cursor,
        searched=searched,
        filters={"status": status or "", "job_type": job_type or "", "queue": queue or ""},
        statuses=list(JobStatus),
        job_types=sorted(task.name for task in dashboard.queue.registry),
        first_page=cursor is None,
        read_only=await _read_only(request, dashboard),
    )


@router.get("/jobs/{job_id}", name="equeue_dashboard_job", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str, dashboard: DashboardDep) -> HTMLResponse:
    """One job: payload, result, attempts with their errors, times, and what it waits for."""
    client = dashboard.client
    job = await client.get(job_id)
    if job is None:
        raise JobNotFound(job_id[:100])
    dependencies = [(dep, await client.get(dep)) for dep in job.depends_on]
    return render(
        request,
        dashboard,
        "job.html",
        page="job",
        job=job,
        dependencies=dependencies,
        read_only=await _read_only(request, dashboard),
    )


@router.get("/workers", name="equeue_dashboard_workers", response_class=HTMLResponse)
async def workers(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    """The worker processes, with their last heartbeat."""
    return render(
        request,
        dashboard,
        "workers.html",
        page="workers",
        workers=await dashboard.client.workers(),
        stalled_after=dashboard.queue.config.stalled_after,
    )


@router.get("/schedules", name="equeue_dashboard_schedules", response_class=HTMLResponse)
async def schedules(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    """The periodic jobs, with when each runs next and its last job."""
    return render(
        request,
        dashboard,
        "schedules.html",
        page="schedules",
        schedules=await dashboard.client.schedules(),
    )


@router.get("/submit", name="equeue_dashboard_submit", response_class=HTMLResponse)
async def submit_form(
    request: Request,
    dashboard: DashboardDep,
    job_type: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """A form for a job of the chosen type, generated from its payload schema."""
    registry = dashboard.queue.registry
    names = sorted(task.name for task in registry)
    chosen = job_type if job_type in names else (names[0] if names else None)
    fields = fields_of(registry.get(chosen).payload_model.model_json_schema()) if chosen else []
    return render(
        request,
        dashboard,
        "submit.html",
        page="submit",
        job_types=names,
        chosen=chosen,
        fields=fields,
        values={},
        errors={},
        read_only=await _read_only(request, dashboard),
    )
