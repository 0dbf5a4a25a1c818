"""The one place where errors become HTTP responses, applied to every route of the router.

An ``APIRouter`` cannot install exception handlers (the host app owns those), so the router's
routes use ``EQueueRoute``, whose handler turns the package's errors into responses itself.
"""

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from fastapi_equeue.api.body import InvalidBody
from fastapi_equeue.backends.outage import database_errors, is_unavailable
from fastapi_equeue.errors import (
    DatabaseUnavailable,
    EQueueError,
    InvalidCursor,
    InvalidOption,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
    RateLimited,
    UnknownJobType,
)

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

UNAVAILABLE = "the job database is unavailable; try again shortly"
"""The detail of every 503: fixed, as a driver's own message may name the server, the user or
worse, and only the server's log is the place for it."""

_STATUS: tuple[tuple[type[EQueueError], int], ...] = (
    (JobNotFound, 404),
    (InvalidTransition, 409),
    (PayloadTooLarge, 413),
    (UnknownJobType, 422),
    (InvalidPayload, 422),
    (InvalidOption, 422),
    (InvalidCursor, 422),
    (InvalidBody, 422),
    (RateLimited, 429),
    (DatabaseUnavailable, 503),
)


def status_for(exc: EQueueError) -> int:
    """The HTTP status of a package error (500 for those that are the server's fault)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(exc: EQueueError) -> JSONResponse:
    """The response for a package error, FastAPI-style: ``{"detail": ...}``."""
    status = status_for(exc)
    headers = {}
    body: dict[str, object] = {"detail": str(exc)}
    if isinstance(exc, InvalidTransition):
        body["status"] = exc.status.value
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, DatabaseUnavailable):
        body["detail"] = UNAVAILABLE
        headers["Retry-After"] = "1"
    elif isinstance(exc, InvalidPayload):
        body["detail"] = [
            {**error, "loc": ["body", "payload", *_as_list(error.get("loc"))]}
            for error in exc.errors
        ] or [{"loc": ["body", "payload"], "msg": str(exc), "type": "invalid_payload"}]
    elif isinstance(exc, UnknownJobType):
        body["detail"] = [
            {"loc": ["body", "job_type"], "msg": str(exc), "type": "unknown_job_type"}
        ]
    elif isinstance(exc, InvalidBody):
        body["detail"] = [{"loc": ["body"], "msg": str(exc), "type": "json_invalid"}]
    elif isinstance(exc, InvalidOption | InvalidCursor):
        where = ["query", "cursor"] if isinstance(exc, InvalidCursor) else [exc.location, exc.field]
        body["detail"] = [{"loc": where, "msg": str(exc), "type": "value_error"}]
    if status == 500:
        logger.error("jobs API error: %s", exc)
        body["detail"] = "internal error of the jobs API"
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


class EQueueRoute(APIRoute):
    """A route that answers the package's errors, and database outages, itself."""

    def get_route_handler(self) -> Handler:
        """The usual handler, wrapped in the error table."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except EQueueError as exc:
                return error_response(exc)
            except database_errors() as exc:
                if not is_unavailable(exc):
                    raise
                logger.warning("jobs API: the database is unavailable (%s)", type(exc).__name__)
                return JSONResponse(
                    {"detail": UNAVAILABLE},
                    status_code=503,
                    headers={"Retry-After": "1"},
                )

        return handle
