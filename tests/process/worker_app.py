"""The app that the process tests' worker subprocesses run: ``python -m fastapi_equeue.worker
worker_app:queue`` with this folder on ``PYTHONPATH``.

``queue`` is built on first access from the environment, so importing the module (as the tests do,
for ``build_queue``) needs none of it:

- ``EQUEUE_URL`` (required): the database;
- ``EQUEUE_CONCURRENCY``, ``EQUEUE_POLL_INTERVAL``, ``EQUEUE_HEARTBEAT_INTERVAL``,
  ``EQUEUE_STALLED_AFTER``, ``EQUEUE_SHUTDOWN_GRACE``: the ``EQueue`` options;
- ``EQUEUE_LEDGER``: a file to which every task body that finishes appends ``"<token> <pid>"``
  (one file per process; each line is one ``write`` on an ``O_APPEND`` descriptor, so it is on
  disk, whole, as soon as the task returns);
- ``LONG_SECONDS``: how long ``long_sleep`` sleeps (default 60);
- ``EQUEUE_EXECUTIONS``: a file to which every ``timed`` task appends
  ``"<token> <pid> <start> <end>"``, ``time.time()`` at the start and at the end of its body (one
  file for every process; each line is one ``write`` on an ``O_APPEND`` descriptor). Tests of
  queue limits measure from these records what the task bodies saw, never the library's counters.

A task is not told its job id, so every payload carries a ``token`` that the test maps back to
its job. Every task returns the pid of the process that ran it, stored as the job's result.
"""

import asyncio
import os
import threading
import time
from typing import Any

from fastapi_equeue import EQueue

# Fast enough that rescue and shutdown tests finish in seconds; each is overridable by env var.
DEFAULTS = {
    "concurrency": 10,
    "poll_interval": 0.2,
    "heartbeat_interval": 0.3,
    "stalled_after": 2.0,
    "shutdown_grace": 2.0,
}
_ENV = {
    "concurrency": ("EQUEUE_CONCURRENCY", int),
    "poll_interval": ("EQUEUE_POLL_INTERVAL", float),
    "heartbeat_interval": ("EQUEUE_HEARTBEAT_INTERVAL", float),
    "stalled_after": ("EQUEUE_STALLED_AFTER", float),
    "shutdown_grace": ("EQUEUE_SHUTDOWN_GRACE", float),
}

_files_lock = threading.Lock()
_files: dict[str, int] = {}


def _append(variable: str, line: str) -> None:
    """Append ``line`` to the file named by the environment ``variable``, if it names one."""
    path = os.environ.get(variable)
    if path:
        with _files_lock:
            if path not in _files:
                _files[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(_files[path], f"{line}\n".encode())


def record(token: str) -> int:
    """Append ``"<token> <pid>"`` to this process's ledger (if it has one); return the pid."""
    pid = os.getpid()
    _append("EQUEUE_LEDGER", f"{token} {pid}")
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

    @queue.task
    async def sleep_then_record(token: str, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return record(token)

    @queue.task
    async def timed(token: str, seconds: float) -> int:
        start = time.time()
        await asyncio.sleep(seconds)
        pid = os.getpid()
        _append("EQUEUE_EXECUTIONS", f"{token} {pid} {start!r} {time.time()!r}")
        return pid

    @queue.task
    async def long_sleep(token: str) -> int:
        # Cooperative: a cancellation (shutdown past its grace) interrupts the sleep at once.
        await asyncio.sleep(float(os.environ.get("LONG_SECONDS", "60")))
        return record(token)

    return queue


def queue_from_env() -> EQueue:
    """The queue the worker runs, configured by the environment (see the module docstring)."""
    url = os.environ.get("EQUEUE_URL")
    if not url:
        raise RuntimeError("worker_app needs EQUEUE_URL to build its queue")
    options: dict[str, Any] = {}
    for option, (variable, kind) in _ENV.items():
        if variable in os.environ:
            options[option] = kind(os.environ[variable])
    return build_queue(url, **options)


def __getattr__(name: str) -> EQueue:
    # PEP 562: ``worker_app:queue`` builds the queue when the worker looks it up, not at import.
    if name != "queue":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    queue = queue_from_env()
    globals()["queue"] = queue
    return queue
