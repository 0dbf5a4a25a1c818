"""``get_queue``: the FastAPI dependency that hands an endpoint the app's ``QueueClient``."""

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from fastapi_equeue.client import QueueClient
from fastapi_equeue.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi_equeue.queue import EQueue


# Both are `async def` so that FastAPI calls them on the event loop; a plain `def` dependency
# goes through the threadpool on every request.


async def get_equeue(connection: HTTPConnection) -> "EQueue":
    """The ``EQueue`` whose lifespan runs this app.

    Raises:
        ConfigurationError: the app was not started with ``queue.lifespan``.
    """
    queue = getattr(connection.app.state, "equeue", None)
    if queue is None:
        raise ConfigurationError(
            "no queue on this app: create it with FastAPI(lifespan=queue.lifespan) or nest "
            "`async with queue.lifespan(app):` in your own lifespan"
        )
    return queue  # type: ignore[no-any-return]


async def get_queue(connection: HTTPConnection) -> QueueClient:
    """The ``QueueClient`` of the ``EQueue`` whose lifespan runs this app.

    Use as ``q: QueueClient = Depends(equeue.get_queue)``; tests may override it with
    ``app.dependency_overrides[equeue.get_queue]``.

    Raises:
        ConfigurationError: the app was not started with ``queue.lifespan``.
    """
    return (await get_equeue(connection)).client
