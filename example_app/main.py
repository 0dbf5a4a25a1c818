"""The example app: a signup endpoint that enqueues a welcome email, workers in the same process.

Run it with ``python -m example_app`` (or ``nox -s example``), then open http://127.0.0.1:8000/docs.
``DATABASE_URL`` switches it to PostgreSQL, e.g. ``postgresql+asyncpg://postgres@127.0.0.1/app``.
"""

import asyncio
import os
import random
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel

import fastapi_equeue as equeue

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./example.db")

queue = equeue.EQueue(DATABASE_URL, concurrency=int(os.environ.get("EQUEUE_CONCURRENCY", "10")))


@queue.task(max_attempts=5, timeout=30, retry_delay=2)
async def send_email(recipient_email: str, subject: str, body: str) -> dict[str, object]:
    """Pretend to deliver an email; fails now and then, as real mail servers do."""
    await asyncio.sleep(0.2)
    if random.random() < 0.3:
        raise ConnectionError("the mail server did not answer")
    return {"delivered": True, "to": recipient_email}


Queue = Annotated[equeue.QueueClient, Depends(equeue.get_queue)]

app = FastAPI(title="fastapi_equeue example", lifespan=queue.lifespan)


class Signup(BaseModel):
    """A new user."""

    email: str


@app.post("/signup", status_code=201)
async def signup(body: Signup, q: Queue) -> dict[str, str]:
    """Create a user and enqueue their welcome email."""
    job = await q.enqueue(
        "send_email",
        {"recipient_email": body.email, "subject": "Welcome!", "body": "Glad to have you."},
    )
    return {"job_id": job.id}


@app.get("/signup/{job_id}")
async def signup_status(job_id: str, q: Queue) -> equeue.Job | None:
    """The welcome email's job, as the queue sees it."""
    return await q.get(job_id)
