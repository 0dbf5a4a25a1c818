"""The web app that the uvicorn process tests serve: ``uvicorn web_app:app --workers 2`` with this
folder on ``PYTHONPATH``.

Each uvicorn child builds its own ``app`` (with ``FastAPI(lifespan=queue.lifespan)``, so each
child runs in-process workers) and mounts ``equeue.router``. The queue is ``worker_app``'s, with
the same tasks and the same environment variables (``EQUEUE_URL``, ``EQUEUE_LEDGER``,
``EQUEUE_CONCURRENCY``, ``EQUEUE_STALLED_AFTER``...), so the ledger lines name the child that ran
each task. ``app`` is built on first access, so importing the module needs none of them.
"""

from fastapi import FastAPI
from worker_app import queue_from_env

import fastapi_equeue as equeue


def build_app() -> FastAPI:
    """A FastAPI app whose lifespan runs the queue's in-process workers, with ``/jobs``."""
    queue = queue_from_env()
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    return app


def __getattr__(name: str) -> FastAPI:
    # PEP 562: uvicorn's ``web_app:app`` builds the app in each child, not at import.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = build_app()
    globals()["app"] = app
    return app
