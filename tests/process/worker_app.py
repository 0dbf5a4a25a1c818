"""The app that the process tests' worker subprocesses run: ``python -m fastapi_equeue.worker
worker_app:queue`` with this folder and the repository root on ``PYTHONPATH``.

``queue`` is built on first access from the environment (``tests.apps`` reads ``EQUEUE_URL``,
the ``EQueue`` options and ``EQUEUE_LEDGER``), so importing the module (as the tests do, for
``build_queue``) needs none of it. Besides:

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
import time
from typing import Any

from fastapi_equeue import EQueue
from tests import apps
from tests.apps import record

# Fast enough that rescue and shutdown tests finish in seconds; each is overridable by env var.
DEFAULTS = {
    "concurrency": 10,
    "poll_interval": 0.2,
    "heartbeat_interval": 0.3,
    "stalled_after": 2.0,
    "shutdown_grace": 2.0,
}


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
        apps.append("EQUEUE_EXECUTIONS", f"{token} {pid} {start!r} {time.time()!r}")
        return pid

    @queue.task
    async def long_sleep(token: str) -> int:
        # Cooperative: a cancellation (shutdown past its grace) interrupts the sleep at once.
        await asyncio.sleep(float(os.environ.get("LONG_SECONDS", "60")))
        return record(token)

    return queue


def queue_from_env() -> EQueue:
    """The queue the worker runs, configured by the environment (see the module docstring)."""
    return build_queue(apps.database_url("worker_app"), **apps.options_from_env())


__getattr__ = apps.built_on_first_access(globals(), queue=queue_from_env)
