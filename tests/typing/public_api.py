"""Checked by mypy (``nox -s typecheck``), never run: the public API keeps its types."""

from collections.abc import Coroutine
from typing import Annotated, Any, assert_type

from fastapi import Depends, FastAPI

import fastapi_equeue as equeue

queue = equeue.EQueue("sqlite+aiosqlite:///./typing.db", concurrency=2)


@queue.task(max_attempts=3, timeout=30)
async def send_email(recipient_email: str, subject: str, body: str) -> dict[str, bool]:
    return {"delivered": True}


@queue.task
def resize(image_id: int, width: int = 640) -> int:
    return image_id * width


# The decorated functions keep their signatures and stay callable.
assert_type(resize(1, width=2), int)
pending: Coroutine[Any, Any, dict[str, bool]] = send_email("a@example.com", "Hi", "...")
pending.close()

app = FastAPI(lifespan=queue.lifespan)
app.include_router(equeue.router)


@app.post("/signup")
async def signup(q: Annotated[equeue.QueueClient, Depends(equeue.get_queue)]) -> dict[str, str]:
    job = await q.enqueue("send_email", {"recipient_email": "a@example.com"})
    assert_type(job, equeue.Job)
    assert_type(job.status, equeue.JobStatus)
    done = await q.wait(job.id, timeout=5)
    assert_type(done, equeue.Job)
    page = await q.list(limit=10)
    assert_type(page, equeue.Page)
    return {"job_id": job.id}


async def script() -> None:
    async with queue:
        client = queue.client
        assert_type(client, equeue.QueueClient)
        jobs = await client.enqueue_many([{"job_type": "resize", "payload": {"image_id": 1}}])
        assert_type(jobs, list[equeue.Job])
        maybe = await client.get(jobs[0].id)
        assert_type(maybe, equeue.Job | None)
