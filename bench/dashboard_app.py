"""The app that ``bench/dashboard.py`` serves: the jobs router (and with it the dashboard) on a
queue that runs no workers, on the database in ``EQUEUE_BENCH_DATABASE_URL``.

It also owns the workload's names, which the driver's populate statements use: the queues, the
job types (each registered as a task, so that pages listing or submitting job types see them)
and the periodic schedules (so that ``/jobs/schedules`` has rows to read).

Run it with ``uvicorn dashboard_app:app`` from ``bench/``; the app is built on first access
(PEP 562), so the driver can import the names without a database.
"""

import os
from typing import Any

QUEUES = tuple(f"q{i}" for i in range(8))
JOB_TYPES = tuple(f"t{i:02d}" for i in range(20))
# Each job type's queue: t00 in q0, t01 in q1, ... (the populate statements use the same rule).
TYPE_QUEUE = {job_type: QUEUES[i % len(QUEUES)] for i, job_type in enumerate(JOB_TYPES)}
# (name, cron, job type): the periodic jobs the app declares.
SCHEDULES = (
    ("every-5-minutes", "*/5 * * * *", "t00"),
    ("hourly", "0 * * * *", "t01"),
    ("nightly", "30 2 * * *", "t02"),
    ("weekly", "0 6 * * 1", "t03"),
)


def build_queue(database_url: str) -> Any:
    """A queue with every job type registered and no workers (``concurrency=0``)."""
    import fastapi_equeue as equeue

    queue = equeue.EQueue(database_url, concurrency=0)
    for job_type in JOB_TYPES:

        async def run(item: int, source: str = "bench") -> dict[str, Any]:
            return {"ok": True, "item": item}

        queue.task(job_type, queue=TYPE_QUEUE[job_type], max_attempts=3)(run)
    for name, cron, job_type in SCHEDULES:
        queue.periodic(cron, job_type, {"item": 0}, name=name)
    return queue


def build_app(database_url: str) -> Any:
    from fastapi import FastAPI

    import fastapi_equeue as equeue

    queue = build_queue(database_url)
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    return app


def __getattr__(name: str) -> Any:
    # PEP 562: ``dashboard_app:app`` is built when uvicorn first reads it.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = build_app(os.environ["EQUEUE_BENCH_DATABASE_URL"])
    globals()[name] = value
    return value
