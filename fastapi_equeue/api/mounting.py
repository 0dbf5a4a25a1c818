"""What the queue's lifespan does to the app it runs: document the job types in OpenAPI, and
warn once when the jobs API is mounted with no dependency to protect it."""

import logging
from collections.abc import Iterator
from typing import Any

from fastapi_equeue.api import openapi
from fastapi_equeue.api.http_errors import EQueueRoute
from fastapi_equeue.tasks import TaskRegistry

logger = logging.getLogger("fastapi_equeue.api")

UNPROTECTED = (
    "the jobs API is mounted without dependencies: anyone who can reach this app can submit, "
    "cancel and retry jobs and read their payloads and results. Protect it with "
    "app.include_router(equeue.router, dependencies=[Depends(your_auth)])"
)


def prepare_app(app: Any, registry: TaskRegistry) -> None:
    """Document the job types and check that the mounted routes are protected."""
    dependencies = list(_mounted(getattr(app, "routes", ())))
    if not dependencies:
        return
    openapi.install(app, registry)
    if not all(dependencies):
        logger.warning(UNPROTECTED)


def _mounted(routes: Any) -> Iterator[list[Any]]:
    """The dependencies of each of our routes mounted in ``routes``, however FastAPI nests them:
    as copied routes (older releases) or as included routers resolved on demand (newer ones)."""
    for route in routes:
        if isinstance(route, EQueueRoute):
            yield list(route.dependencies)
            continue
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):
            for candidate in candidates():
                if isinstance(getattr(candidate, "original_route", None), EQueueRoute):
                    yield list(getattr(candidate, "dependencies", ()))
                else:
                    yield from _mounted([candidate])
