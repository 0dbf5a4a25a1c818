"""``DashboardRoute``: how the dashboard's routes answer errors, as HTML rather than JSON.

A refused action or a failed lookup becomes a message in the page (a fragment, for the
dashboard's own requests) with the status the REST API would give; a database outage, a 503
page that the live stream's next refresh replaces.
"""

import logging

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from markupsafe import escape

from fastapi_equeue.api.http_errors import UNAVAILABLE, EQueueRoute, Handler, status_for
from fastapi_equeue.backends.outage import database_errors, is_unavailable
from fastapi_equeue.dashboard.access import Forbidden
from fastapi_equeue.errors import DatabaseUnavailable, EQueueError, InvalidPayload

logger = logging.getLogger("fastapi_equeue.dashboard")

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class DashboardRoute(EQueueRoute):
    """A dashboard route: the package's errors, refusals and outages answered as HTML.

    An ``EQueueRoute`` still, so that mounting the router without dependencies is warned about
    for the dashboard as for the REST API.
    """

    def get_route_handler(self) -> Handler:
        """The usual handler, its errors rendered as messages."""
        handler = APIRoute.get_route_handler(self)

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Forbidden as exc:
                return message(str(exc), 403)
            except EQueueError as exc:
                if isinstance(exc, DatabaseUnavailable):
                    return message(UNAVAILABLE, 503)
                status = status_for(exc)
                if status == 500:
                    logger.error("dashboard error: %s", exc)  # noqa: TRY400 - the message says it all
                    return message("internal error of the dashboard", 500)
                return message(_describe(exc), status)
            except database_errors() as exc:
                if not is_unavailable(exc):
                    raise
                logger.warning("dashboard: the database is unavailable (%s)", type(exc).__name__)
                return message(UNAVAILABLE, 503)

        return handle


def message(text: str, status_code: int) -> HTMLResponse:
    """A message in a small self-contained fragment, which the dashboard's script shows where
    the action was made (or the browser shows as a page)."""
    body = f'<p class="flash error" role="alert" data-test="error">{escape(text)}</p>'
    return HTMLResponse(body, status_code=status_code, headers=_HEADERS)


def _describe(exc: EQueueError) -> str:
    if isinstance(exc, InvalidPayload) and exc.errors:
        parts = []
        for error in exc.errors:
            where = ".".join(str(part) for part in error.get("loc", ()) or ()) or "payload"  # type: ignore[attr-defined]
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return "; ".join(parts)
    return str(exc)
