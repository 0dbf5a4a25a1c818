"""The web app that the uvicorn process tests serve: ``uvicorn web_app:app --workers 2`` with this
folder and the repository root on ``PYTHONPATH``.

Each uvicorn child builds its own ``app`` (with ``FastAPI(lifespan=queue.lifespan)``, so each
child runs in-process workers) and mounts ``equeue.router``. The queue is ``worker_app``'s, with
the same tasks and the same environment variables (``EQUEUE_URL``, ``EQUEUE_LEDGER``,
``EQUEUE_CONCURRENCY``, ``EQUEUE_STALLED_AFTER``...), so the ledger lines name the child that ran
each task. ``app`` is built on first access, so importing the module needs none of them.
"""

from fastapi import FastAPI
from worker_app import queue_from_env

from tests import apps


def build_app() -> FastAPI:
    """A FastAPI app whose lifespan runs the queue's in-process workers, with ``/jobs``."""
    return apps.api_app(queue_from_env())


__getattr__ = apps.built_on_first_access(globals(), app=build_app)
