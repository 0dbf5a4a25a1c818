"""The app of the SQLite pressure tests, run in subprocesses with this folder and the repository
root on ``PYTHONPATH``: ``uvicorn sqlite_app:app`` (the REST API, with in-process workers unless
``EQUEUE_CONCURRENCY`` is 0) and ``python -m fastapi_equeue.worker sqlite_app:queue``.

``queue`` and ``app`` are built on first access from the environment (``tests.apps`` reads
``EQUEUE_URL``, the SQLite database, the ``EQueue`` options and ``EQUEUE_LEDGER``), so importing
the module needs none of it. Besides, ``EQUEUE_MARKS`` is a directory shared by every process,
where ``fails_once`` and ``hold_once`` mark a token's first run (``O_CREAT | O_EXCL``: exactly one
run is the first).

Besides ``equeue.router``, the app has ``POST /signups/{token}``: a row of the host's own table
(``signups``, which the test creates) and a ``quick`` job written in one host transaction, and
with ``?abort=1`` the same transaction rolled back (answered 409).
"""

import asyncio
import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, QueueClient
from tests import apps
from tests.apps import record

DEFAULTS: dict[str, Any] = {
    "concurrency": 8,
    "poll_interval": 0.1,
    "heartbeat_interval": 0.3,
    "stalled_after": 15.0,
    "shutdown_grace": 2.0,
}
# The host's own engine waits as long for the write lock as the queue's connections do.
HOST_BUSY_TIMEOUT = 30.0


def first_run(token: str) -> bool:
    """Whether this is the first run of ``token``'s task in any process (marks it if so)."""
    path = os.path.join(os.environ["EQUEUE_MARKS"], token)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


def build_queue(database_url: str, **options: Any) -> EQueue:
    """An ``EQueue`` with this app's tasks; ``options`` override ``DEFAULTS``."""
    queue = EQueue(database_url, **{**DEFAULTS, **options})

    @queue.task
    async def quick(token: str) -> int:
        return record(token)

    @queue.task
    def quick_sync(token: str) -> int:
        return record(token)

    @queue.task
    async def nap(token: str, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return record(token)

    @queue.task(max_attempts=3, retry_delay=0)
    async def fails_once(token: str) -> int:
        if first_run(token):
            raise RuntimeError(f"first attempt of {token} fails")
        return record(token)

    @queue.task(max_attempts=2, retry_delay=0)
    async def always_fails(token: str) -> None:
        raise RuntimeError(f"{token} always fails")

    @queue.task
    async def hold_once(token: str) -> int:
        # The first run holds its job until its process is killed; the rescued run finishes.
        if first_run(token):
            await asyncio.sleep(3600)
        return record(token)

    return queue


def queue_from_env() -> EQueue:
    """The queue, configured by the environment (see the module docstring)."""
    return build_queue(apps.database_url("sqlite_app"), **apps.options_from_env())


def build_app(queue: EQueue, host_engine: AsyncEngine) -> FastAPI:
    """The REST API on ``queue``, plus the host's transactional signup route."""
    app = apps.api_app(queue)
    sessions = async_sessionmaker(host_engine, expire_on_commit=False)

    @app.post("/signups/{token}", status_code=201)
    async def signup(
        token: str, jobs: Annotated[QueueClient, Depends(equeue.get_queue)], abort: bool = False
    ) -> dict[str, str]:
        async with sessions() as session:
            transaction = await session.begin()
            await session.execute(
                text("INSERT INTO signups (token) VALUES (:token)"), {"token": token}
            )
            job = await jobs.enqueue("quick", {"token": token}, session=session)
            if abort:
                await transaction.rollback()
                raise HTTPException(409, "signup aborted; nothing was written")
            await transaction.commit()
        return {"job_id": job.id}

    return app


def queue_once() -> EQueue:
    """The module's ``queue``: built from the environment on the first call, then kept."""
    queue: EQueue = globals().get("queue") or queue_from_env()
    globals()["queue"] = queue
    return queue


def app_from_env() -> FastAPI:
    """The REST API on the module's ``queue``, with a host engine on the same file."""
    engine = create_async_engine(
        apps.database_url("sqlite_app"), connect_args={"timeout": HOST_BUSY_TIMEOUT}
    )
    return build_app(queue_once(), engine)


__getattr__ = apps.built_on_first_access(globals(), queue=queue_once, app=app_from_env)
