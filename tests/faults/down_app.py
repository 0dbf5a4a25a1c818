"""The app that ``test_start_while_down`` runs in subprocesses, started while its database is down.

With this folder on ``PYTHONPATH``:

- ``python -m fastapi_equeue.worker down_app:queue`` runs the standalone worker;
- ``uvicorn down_app:app`` serves ``FastAPI(lifespan=queue.lifespan)`` with ``equeue.router``, so
  the server runs in-process workers too, and logs the ``fastapi_equeue`` logger (timestamped,
  from INFO) to stderr, as the worker command does (uvicorn configures only its own loggers).

Both are built on first access from the environment: ``EQUEUE_URL`` (required) names the
database; ``EQUEUE_LEDGER``, if set, is a file to which every ``record`` job appends
``"<token> <pid>"`` (one ``write`` on an ``O_APPEND`` descriptor).
"""

import logging
import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

import fastapi_equeue as equeue
from fastapi_equeue import EQueue

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OPTIONS: dict[str, Any] = {"concurrency": 4, "poll_interval": 0.2, "heartbeat_interval": 0.3}


def build_queue(url: str | None = None, **options: Any) -> EQueue:
    """The queue of ``url`` (by default ``EQUEUE_URL``), with one task: ``record(token)``;
    ``options`` override ``OPTIONS``."""
    url = url or os.environ.get("EQUEUE_URL")
    if not url:
        raise RuntimeError("down_app needs EQUEUE_URL to build its queue")
    queue = EQueue(url, **{**OPTIONS, **options})

    @queue.task
    def record(token: str) -> int:
        pid = os.getpid()
        ledger = os.environ.get("EQUEUE_LEDGER")
        if ledger:
            fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{token} {pid}\n".encode())
            finally:
                os.close(fd)
        return pid

    return queue


def build_app() -> FastAPI:
    """A FastAPI app whose lifespan runs the queue's in-process workers, with ``/jobs``."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    library = logging.getLogger("fastapi_equeue")
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    queue = build_queue()
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    return app


def __getattr__(name: str) -> object:
    # PEP 562: ``down_app:queue`` and ``down_app:app`` are built when looked up, not at import.
    builders: dict[str, Callable[[], object]] = {"queue": build_queue, "app": build_app}
    if name not in builders:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = builders[name]()
    globals()[name] = value
    return value
