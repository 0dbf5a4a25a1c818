"""What the apps that tests run in subprocesses share: the queue's database and options from the
environment, the ledger that task bodies append to, the REST app, and module attributes built on
first access.

The apps (``tests/process/worker_app.py``, ``sqlite_app.py``, ``web_app.py`` and
``tests/faults/down_app.py``) are imported by their bare names in the subprocesses, with their
folder and the repository root on ``PYTHONPATH`` (see ``tests.process.conftest.python_path``),
so this module is ``tests.apps`` there as in the tests.

The environment:

- ``EQUEUE_URL`` (required): the database;
- ``EQUEUE_CONCURRENCY``, ``EQUEUE_POLL_INTERVAL``, ``EQUEUE_HEARTBEAT_INTERVAL``,
  ``EQUEUE_STALLED_AFTER``, ``EQUEUE_SHUTDOWN_GRACE``, ``EQUEUE_LISTEN_URL`` and
  ``EQUEUE_POLL_ONLY`` (``1`` for ``True``): the ``EQueue`` options, for the apps that read them;
- ``EQUEUE_LEDGER``: a file to which every task body that finishes appends ``"<token> <pid>"``
  (one file per process).
"""

import os
import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

import fastapi_equeue as equeue
from fastapi_equeue import EQueue

# Each ``EQueue`` option an app may take from the environment: its variable and its reader.
OPTIONS_FROM_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "concurrency": ("EQUEUE_CONCURRENCY", int),
    "poll_interval": ("EQUEUE_POLL_INTERVAL", float),
    "heartbeat_interval": ("EQUEUE_HEARTBEAT_INTERVAL", float),
    "stalled_after": ("EQUEUE_STALLED_AFTER", float),
    "shutdown_grace": ("EQUEUE_SHUTDOWN_GRACE", float),
    "listen_url": ("EQUEUE_LISTEN_URL", str),
    "poll_only": ("EQUEUE_POLL_ONLY", lambda value: value == "1"),
}

_files_lock = threading.Lock()
_files: dict[str, int] = {}


def database_url(app: str) -> str:
    """``EQUEUE_URL``; ``app`` names the module that needs it, should it be missing."""
    url = os.environ.get("EQUEUE_URL")
    if not url:
        raise RuntimeError(f"{app} needs EQUEUE_URL to build its queue")
    return url


def options_from_env() -> dict[str, Any]:
    """The ``EQueue`` options that the environment sets (see ``OPTIONS_FROM_ENV``)."""
    return {
        option: read(value)
        for option, (variable, read) in OPTIONS_FROM_ENV.items()
        if (value := os.environ.get(variable))
    }


def append(variable: str, line: str) -> None:
    """Append ``line`` to the file named by the environment ``variable``, if it names one.

    Each line is one ``write`` on an ``O_APPEND`` descriptor (opened once per process), so it is
    on disk, whole, as soon as this returns, whatever other threads and processes append.
    """
    path = os.environ.get(variable)
    if path:
        with _files_lock:
            if path not in _files:
                _files[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(_files[path], f"{line}\n".encode())


def record(token: str) -> int:
    """Append ``"<token> <pid>"`` to this process's ledger (if it has one); return the pid."""
    pid = os.getpid()
    append("EQUEUE_LEDGER", f"{token} {pid}")
    return pid


def api_app(queue: EQueue) -> FastAPI:
    """A FastAPI app whose lifespan runs ``queue`` (and its in-process workers), with ``/jobs``."""
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    return app


def built_on_first_access(
    namespace: dict[str, Any], **builders: Callable[[], object]
) -> Callable[[str], object]:
    """A module ``__getattr__`` (PEP 562) that builds each name of ``builders`` when it is first
    looked up (``worker_app:queue`` by the worker, ``web_app:app`` by uvicorn) and keeps it in
    the module's ``namespace``, its ``globals()``: importing the module needs no environment."""

    def __getattr__(name: str) -> object:
        if name not in builders:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = namespace[name] = builders[name]()
        return value

    return __getattr__
