"""The operator dashboard at ``/jobs/dashboard``, served by ``equeue.router``.

Server-rendered pages (Jinja2), a vendored htmx and a small script of our own for the
actions and the live refresh, and inline SVG for the chart: nothing is loaded from another
origin, and the Content-Security-Policy forbids inline script and ``eval``. See
``docs/dashboard.md``.
"""

from fastapi import APIRouter

from fastapi_equeue.dashboard import actions, pages, stream
from fastapi_equeue.dashboard.route import DashboardRoute

router = APIRouter(route_class=DashboardRoute)
for part in (pages.router, actions.router, stream.router):
    router.include_router(part, prefix="/dashboard", include_in_schema=False)

__all__ = ["router"]
