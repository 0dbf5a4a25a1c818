"""The app that the browser tests serve: ``uvicorn dashboard_app:app`` with this folder and the
repository root on ``PYTHONPATH`` (see ``tests.process.conftest.python_path``).

One process: its lifespan runs the queue's in-process workers (none with
``EQUEUE_CONCURRENCY=0``), and it mounts ``equeue.router``, dashboard included. The queue takes
its database and options from the environment (``EQUEUE_URL``, ``EQUEUE_POLL_INTERVAL``...,
read by ``tests.apps``) over ``DEFAULTS``; ``app`` is built on first access, so importing the
module needs none of them. ``queue`` (also built on first access) is the same queue for a
standalone worker: ``python -m fastapi_equeue.worker dashboard_app:queue``.

Two more variables:

- ``EQ_DASHBOARD_READ_ONLY=1``: ``EQueue(dashboard_read_only=True)``;
- ``EQ_DEMO=1``: the tasks and schedules of the documentation's screenshots besides
  (``send_email``, ``resize_image``, ``generate_report``, ``charge_card``).

The tasks give every page something to show:

- ``add(a, b)``: completes at once with ``a + b``;
- ``fail(message)``: always raises ``RuntimeError(message)``; two attempts, the second 0.2 s
  after the first, so a job is ``failed`` within a second;
- ``slow(seconds)``: sleeps in steps of 0.1 s, reporting its progress after each;
- ``login(username, password, api_key)``: completes; its payload holds secrets to be masked;
- ``echo(text)``: completes with ``text`` (a string shown as payload and as result);
- the schedule ``add-yearly`` (``add`` at midnight every 1 January, UTC), so that the schedules
  page has a row and no job of it runs while the tests do.
"""

import asyncio
import os
from typing import Any

from fastapi import FastAPI

from fastapi_equeue import EQueue, JobContext
from tests import apps

# Fast enough for a test to see a job move within a second; each is overridable by env var.
DEFAULTS: dict[str, Any] = {
    "concurrency": 4,
    "poll_interval": 0.1,
    "heartbeat_interval": 0.5,
    "stalled_after": 3.0,
    "shutdown_grace": 1.0,
}
SCHEDULE = "add-yearly"
STEP = 0.1
"""Seconds between two progress reports of ``slow``."""


def build_queue(database_url: str, **options: Any) -> EQueue:
    """An ``EQueue`` with this app's tasks and schedule; ``options`` override ``DEFAULTS``."""
    queue = EQueue(database_url, **{**DEFAULTS, **options})

    @queue.task
    async def add(a: int, b: int) -> int:
        return a + b

    @queue.task(max_attempts=2, retry_delay=0.2)
    async def fail(message: str) -> None:
        raise RuntimeError(message)

    @queue.task
    async def slow(seconds: float, ctx: JobContext) -> float:
        steps = max(1, round(seconds / STEP))
        for done in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            await ctx.progress(done / steps, f"{done} of {steps} steps")
        return seconds

    @queue.task
    async def login(username: str, password: str, api_key: str) -> str:
        return f"{username} logged in"

    @queue.task
    async def echo(text: str) -> str:
        return text

    queue.periodic("0 0 1 1 *", "add", {"a": 1, "b": 1}, name=SCHEDULE)
    return queue


def add_demo(queue: EQueue) -> None:
    """The tasks and schedules of the documentation's screenshots (``EQ_DEMO=1``)."""

    @queue.task(queue="emails")
    async def send_email(to: str, subject: str, template: str = "plain") -> str:
        await asyncio.sleep(0.05)
        return f"sent to {to}"

    @queue.task(queue="images")
    async def resize_image(url: str, width: int = 640) -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"url": url.replace(".jpg", f"-{width}w.jpg"), "width": width}

    @queue.task(queue="reports")
    async def generate_report(month: str, ctx: JobContext, pages: int = 600) -> str:
        for page in range(1, pages + 1):
            await asyncio.sleep(1.0)
            await ctx.progress(page / pages, f"page {page} of {pages}")
        return f"reports/{month}.pdf"

    @queue.task(queue="billing", max_attempts=3, retry_delay=0.2)
    async def charge_card(customer_id: str, amount_cents: int, api_key: str) -> None:
        raise RuntimeError(f"card declined for customer {customer_id}: insufficient funds")

    queue.periodic("0 2 * * *", "generate_report", {"month": "current"}, name="nightly-report")
    queue.periodic(
        "*/15 * * * *",
        "send_email",
        {"to": "ops@example.com", "subject": "digest"},
        name="ops-digest",
    )


def build_queue_from_env() -> EQueue:
    """The queue the environment describes (see the module docstring)."""
    options: dict[str, Any] = apps.options_from_env()
    if os.environ.get("EQ_DASHBOARD_READ_ONLY") == "1":
        options["dashboard_read_only"] = True
    queue = build_queue(apps.database_url("dashboard_app"), **options)
    if os.environ.get("EQ_DEMO") == "1":
        add_demo(queue)
    return queue


def build_app() -> FastAPI:
    """A FastAPI app whose lifespan runs the queue's in-process workers, with ``/jobs``."""
    return apps.api_app(build_queue_from_env())


__getattr__ = apps.built_on_first_access(globals(), app=build_app, queue=build_queue_from_env)
