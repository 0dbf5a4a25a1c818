"""Reading a JSON request body with a size limit that holds before the body is read.

A ``Content-Length`` over the limit is refused at once; a body without one (chunked) is read
only until it passes the limit. Either way the app never buffers more than the limit.
"""

import json
from typing import Any

from fastapi import Request

from fastapi_equeue.errors import EQueueError, PayloadTooLarge


class RequestTooLarge(PayloadTooLarge):
    """The request body is longer than the queue accepts."""

    def __init__(self, limit: int) -> None:
        EQueueError.__init__(self, f"the request body is larger than {limit} bytes")
        self.size = limit + 1
        self.limit = limit


class InvalidBody(EQueueError):
    """The request body is not a JSON object."""


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or ``RequestTooLarge`` / ``InvalidBody``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(limit)
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as exc:
        raise InvalidBody(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidBody("the body must be a JSON object")
    return data
