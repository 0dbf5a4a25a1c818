"""The app that ``test_start_while_down`` runs in subprocesses, started while its database is down.

With this folder and the repository root on ``PYTHONPATH``:

- ``python -m fastapi_equeue.worker down_app:queue`` runs the standalone worker;
- ``uvicorn down_app:app`` serves ``FastAPI(lifespan=queue.lifespan)`` with ``equeue.router``, so
  the server runs in-process workers too, and logs the ``fastapi_equeue`` logger (timestamped,
  from INFO) to stderr, as the worker command does (uvicorn configures only its own loggers).

Both are built on first access from the environment: ``EQUEUE_URL`` (required) names the
database; ``EQUEUE_LEDGER``, if set, is a file to which every ``record`` job appends
``"<token> <pid>"`` (see ``tests.apps``). The queue's options are ``OPTIONS``, whatever the
environment says.
"""

import logging
from typing import Any

from fastapi import FastAPI

from fastapi_equeue import EQueue
from tests import apps

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OPTIONS: dict[str, Any] = {"concurrency": 4, "poll_interval": 0.2, "heartbeat_interval": 0.3}


def build_queue(url: str | None = None, **options: Any) -> EQueue:
    """The queue of ``url`` (by default ``EQUEUE_URL``), with one task: ``record(token)``;
    ``options`` override ``OPTIONS``."""
    queue = EQueue(url or apps.database_url("down_app"), **{**OPTIONS, **options})

    @queue.task
    def record(token: str) -> int:
        return apps.record(token)

    return queue


def build_app() -> FastAPI:
    """A FastAPI app whose lifespan runs the queue's in-process workers, with ``/jobs``."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    library = logging.getLogger("fastapi_equeue")
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    return apps.api_app(build_queue())


__getattr__ = apps.built_on_first_access(globals(), queue=build_queue, app=build_app)
