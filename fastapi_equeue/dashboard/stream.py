"""The live stream and the static files.

``GET /jobs/dashboard/stream`` is a server-sent event stream: ``event: hello`` with the feed's
token and version, then ``event: changed`` whenever the queue's ``ChangeFeed`` moves (at most
twice a second). Each stream ends after ``STREAM_LIFETIME`` and the page's script opens the next
at once (uvicorn, like most servers, waits for open responses when it shuts down, and cannot
tell a stream that it does); the hello tells the page whether it missed a change meanwhile.

The static files are the package's own (``htmx``, vendored, and ``dashboard.js`` and
``dashboard.css``); their URLs carry the package version, so browsers may keep them a year.
"""

import functools
import json
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from fastapi_equeue.dashboard.render import asset_version
from fastapi_equeue.dashboard.route import DashboardRoute, message
from fastapi_equeue.dashboard.state import Dashboard, get_dashboard
from fastapi_equeue.live import ChangeFeed

PING_EVERY = 15.0
STREAM_LIFETIME = 5.0
"""Seconds a stream stays open; the page reopens it at once. A server shutting down waits
for open responses, so this is also the longest an open dashboard delays a shutdown."""
RETRY_MS = 2000

STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(route_class=DashboardRoute)


@router.get("/stream", name="equeue_dashboard_stream")
async def stream(dashboard: Annotated[Dashboard, Depends(get_dashboard)]) -> StreamingResponse:
    """Server-sent events: ``changed`` when jobs or queues changed, in any process."""
    feed = dashboard.queue.changes
    return StreamingResponse(
        _events(feed),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _events(feed: ChangeFeed) -> AsyncIterator[str]:
    async with feed.reading():
        seen = feed.version
        hello = json.dumps({"feed": feed.token, "version": seen})
        yield f"retry: {RETRY_MS}\nevent: hello\ndata: {hello}\n\n"
        ends = time.monotonic() + STREAM_LIFETIME
        while (left := ends - time.monotonic()) > 0:
            now = await feed.wait(seen, min(PING_EVERY, left))
            if feed.closed:
                return
            if now != seen:
                seen = now
                yield f"event: changed\ndata: {json.dumps({'version': seen})}\n\n"
            elif time.monotonic() < ends:
                yield ": ping\n\n"


@router.get("/static/{tag}/{name}", name="equeue_dashboard_static")
async def static(tag: str, name: str) -> Response:
    """One of the dashboard's own files."""
    content = _asset(name)
    if content is None:
        return message("no such file", 404)
    cache = "public, max-age=31536000, immutable" if tag == asset_version() else "no-cache"
    return Response(
        content,
        media_type=STATIC_TYPES[name[name.rfind(".") :]],
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )


@functools.lru_cache(maxsize=16)
def _asset(name: str) -> bytes | None:
    """The file ``name`` of the package's ``static/`` folder (read once), or ``None`` for
    anything else: another suffix, a path, a hidden file."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in STATIC_TYPES or "/" in name or "\\" in name or name.startswith("."):
        return None
    item = resources.files("fastapi_equeue.dashboard").joinpath("static", name)
    return item.read_bytes() if item.is_file() else None
