"""Turning a template and its values into a response: the filters every page uses, the URLs of
the dashboard's own routes, and the headers that keep the pages safe.

Every value a page shows goes through Jinja's autoescaping; job values also through
``redact``. The Content-Security-Policy lets a page load only the dashboard's own script and
style, run no inline script, ``eval`` or inline style, and connect only to its own origin.
"""

import functools
import json
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from starlette.requests import Request

from fastapi_equeue.dashboard.redact import redact, redact_text
from fastapi_equeue.dashboard.state import Dashboard

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

NAV = (
    ("overview", "Overview", "equeue_dashboard_overview"),
    ("queues", "Queues", "equeue_dashboard_queues"),
    ("active", "Active", "equeue_dashboard_active"),
    ("failures", "Failures", "equeue_dashboard_failures"),
    ("jobs", "Jobs", "equeue_dashboard_jobs"),
    ("workers", "Workers", "equeue_dashboard_workers"),
    ("schedules", "Schedules", "equeue_dashboard_schedules"),
    ("submit", "Submit", "equeue_dashboard_submit"),
)


def render(
    request: Request,
    dashboard: Dashboard,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    """The page (or fragment) ``template`` with ``values``, and the dashboard's headers."""
    now = datetime.now(UTC)

    def url(name: str, /, **params: Any) -> str:
        return request.url_for(name, **params).path

    def link(name: str, /, **params: str | None) -> str:
        """The URL of route ``name`` with the non-empty ``params`` as its query."""
        query = urlencode({key: value for key, value in params.items() if value})
        return url(name) + (f"?{query}" if query else "")

    def static(name: str) -> str:
        return url("equeue_dashboard_static", tag=asset_version(), name=name)

    def ago(at: datetime | None) -> str:
        return "" if at is None else f"{duration((now - at).total_seconds())} ago"

    def pretty(value: Any) -> str:
        shown = json.dumps(redact(value), indent=2, ensure_ascii=False, default=str)
        return redact_text(shown, hidden=(dashboard.database_url,))

    def text(value: str | None) -> str:
        return "" if value is None else redact_text(value, hidden=(dashboard.database_url,))

    html = dashboard.templates.get_template(template).render(
        request=request,
        url=url,
        link=link,
        static=static,
        ago=ago,
        utc=utc,
        duration=duration,
        pretty=pretty,
        text=text,
        nav=NAV,
        now=now,
        **values,
    )
    return HTMLResponse(
        html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )


@functools.cache
def asset_version() -> str:
    """The package version, which the static URLs carry so that an upgrade changes them."""
    try:
        return version("fastapi-equeue")
    except PackageNotFoundError:
        return "dev"


def utc(at: datetime | None) -> str:
    """An absolute time, to the second, in UTC."""
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """A span of time as people read it: ``850 ms``, ``42 s``, ``3 m 05 s``, ``2 h 10 m``."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"
    return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600):02d} h"
