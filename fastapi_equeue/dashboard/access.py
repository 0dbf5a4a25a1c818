"""Who may act from the dashboard: read-only viewers, and requests that did not come from the
dashboard's own pages.

The host's router dependencies decide who reaches the dashboard at all. Within it, every action
is a POST that must carry ``HX-Request: true`` (a header another site's form cannot send, and
its scripts cannot send without a CORS preflight we never grant) and come from this very site,
as the browser tells with ``Sec-Fetch-Site`` or, in a browser too old for it, ``Origin``.
"""

import inspect
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request

ReadOnlyCheck = Callable[[Request], bool | Awaitable[bool]]
"""``EQueue(dashboard_read_only=...)`` as a function: whether this request's user only views."""

_SAME_SITE = frozenset({"same-origin", "none"})


class Forbidden(Exception):
    """A dashboard action refused, with the reason shown to the user (403)."""


async def is_read_only(request: Request, setting: "bool | ReadOnlyCheck") -> bool:
    """Whether this request may only view, by the queue's ``dashboard_read_only``."""
    if isinstance(setting, bool):
        return setting
    answer = setting(request)
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)


def check_action(request: Request, *, read_only: bool) -> None:
    """Refuse an action from a viewer, or one that another site made the browser send.

    Raises:
        Forbidden: with the reason.
    """
    if read_only:
        raise Forbidden("this dashboard is read-only for you")
    if request.headers.get("hx-request") != "true":
        raise Forbidden("dashboard actions are sent by the dashboard's own pages")
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in _SAME_SITE:
            raise Forbidden("dashboard actions must come from the dashboard's own site")
        return
    # A browser too old to send Sec-Fetch-Site: its Origin must name this host (as the client
    # sees it: a proxy in front may pass the host on as X-Forwarded-Host).
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    if origin is not None and urlsplit(origin).netloc not in hosts:
        raise Forbidden("dashboard actions must come from the dashboard's own site")
