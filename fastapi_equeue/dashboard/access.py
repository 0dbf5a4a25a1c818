"""Who may act from the dashboard: read-only viewers, and requests that did not come from the
dashboard's own pages.

The host's router dependencies decide who reaches the dashboard at all. Within it, every action
is a POST that must carry ``HX-Request: true`` (a header another site's form cannot send, and
its scripts cannot send without a CORS preflight we never grant) and, where the browser says
where it comes from (``Sec-Fetch-Site``, ``Origin``), come from this very site.
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
    if site is not None and site not in _SAME_SITE:
        raise Forbidden("dashboard actions must come from the dashboard's own site")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("dashboard actions must come from the dashboard's own site")
