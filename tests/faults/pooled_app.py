"""The app that the PgBouncer tests' worker subprocesses run: ``python -m fastapi_equeue.worker
pooled_app:queue`` with this folder on ``PYTHONPATH``; the tests import ``build_queue`` from it
to enqueue the same tasks.

``queue`` is built on first access from the environment, so importing the module needs none of it:

- ``EQUEUE_URL`` (required): the database, here PgBouncer's address;
- ``EQUEUE_LISTEN_URL``: ``EQueue(listen_url=...)``, a direct server URL to LISTEN on;
- ``EQUEUE_POLL_ONLY``: ``1`` for ``EQueue(poll_only=True)``;
- ``EQUEUE_LEDGER``: a file to which every task body that finishes appends ``"<token> <pid>"``
  (one file per process; each line is one ``write`` on an ``O_APPEND`` descriptor, so it is on
  disk, whole, as soon as the task returns).

Every payload carries a ``token`` that the test maps back to its job.
"""

import os
import threading
from typing import Any

from fastapi_equeue import EQueue

# Short intervals: a stalled worker is noticed in seconds, and polling finds work at once.
DEFAULTS: dict[str, Any] = {
    "concurrency": 10,
    "poll_interval": 0.2,
    "heartbeat_interval": 0.3,
    "stalled_after": 2.0,
    "shutdown_grace": 2.0,
}

_ledger_lock = threading.Lock()
_ledger: list[int] = []


def record(token: str) -> int:
    """Append ``"<token> <pid>"`` to this process's ledger (if it has one); return the pid."""
    pid = os.getpid()
    path = os.environ.get("EQUEUE_LEDGER")
    if path:
        with _ledger_lock:
            if not _ledger:
                _ledger.append(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
            os.write(_ledger[0], f"{token} {pid}\n".encode())
    return pid


def build_queue(database_url: str, **options: Any) -> EQueue:
    """An ``EQueue`` with this app's tasks; ``options`` override ``DEFAULTS``."""
    queue = EQueue(database_url, **{**DEFAULTS, **options})

    @queue.task
    async def noop(token: str) -> int:
        return record(token)

    @queue.task
    def noop_sync(token: str) -> int:
        return record(token)

    return queue


def queue_from_env() -> EQueue:
    """The queue the worker runs, configured by the environment (see the module docstring)."""
    url = os.environ.get("EQUEUE_URL")
    if not url:
        raise RuntimeError("pooled_app needs EQUEUE_URL to build its queue")
    options: dict[str, Any] = {}
    if listen_url := os.environ.get("EQUEUE_LISTEN_URL"):
        options["listen_url"] = listen_url
    if os.environ.get("EQUEUE_POLL_ONLY") == "1":
        options["poll_only"] = True
    return build_queue(url, **options)


def __getattr__(name: str) -> EQueue:
    # PEP 562: ``pooled_app:queue`` builds the queue when the worker looks it up, not at import.
    if name != "queue":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    queue = queue_from_env()
    globals()["queue"] = queue
    return queue
