"""``router``: the ``/jobs`` REST API, mounted with ``app.include_router(equeue.router)``."""

from fastapi import APIRouter

router = APIRouter(prefix="/jobs", tags=["jobs"])
