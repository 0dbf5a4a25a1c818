"""Protecting the dashboard: the host's dependency guards every page, and viewers only view."""

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, JobStatus

USERS = {"ann-session": "admin", "bob-session": "viewer"}  # your sessions, however you keep them


def user_role(request: Request) -> str:
    """Your authentication: here, a session cookie naming a known user."""
    role = USERS.get(request.cookies.get("session", ""))
    if role is None:
        raise HTTPException(401, "log in first")
    return role


def viewer(request: Request) -> bool:
    """Whether this request's user may only view the dashboard."""
    return user_role(request) != "admin"


async def main(database_url: str) -> None:
    queue = EQueue(database_url, concurrency=0, dashboard_read_only=viewer)

    @queue.task
    async def resize(image_id: int) -> int:
        return image_id

    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router, dependencies=[Depends(user_role)])
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
    # The dashboard's own pages send this header with every action (see "Actions").
    from_the_page = {"HX-Request": "true"}

    async with queue.lifespan(app), http:
        job = await queue.client.enqueue("resize", {"image_id": 7})

        anonymous = await http.get("/jobs/dashboard")
        http.cookies.set("session", "bob-session")
        as_viewer = await http.get(f"/jobs/dashboard/jobs/{job.id}")
        viewer_cancel = await http.post(
            f"/jobs/dashboard/jobs/{job.id}/cancel", headers=from_the_page
        )
        http.cookies.set("session", "ann-session")
        as_admin = await http.get(f"/jobs/dashboard/jobs/{job.id}")
        admin_cancel = await http.post(
            f"/jobs/dashboard/jobs/{job.id}/cancel", headers=from_the_page
        )
        cancelled = await queue.client.get(job.id)

    assert anonymous.status_code == 401  # the host's dependency guards every page
    assert 'data-test="cancel"' not in as_viewer.text  # a viewer sees no action...
    assert viewer_cancel.status_code == 403  # ...and cannot send one
    assert 'data-test="cancel"' in as_admin.text
    assert admin_cancel.status_code == 200
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
