"""From BackgroundTasks to a job: the same function, made durable, retried and visible."""

from typing import Annotated

import httpx
from fastapi import BackgroundTasks, Depends, FastAPI

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, JobStatus

sent: list[str] = []


def send_welcome(email: str) -> None:
    sent.append(email)


async def main(database_url: str) -> None:
    sent.clear()
    queue = EQueue(database_url, concurrency=2, poll_interval=0.1)
    queue.task(max_attempts=5)(send_welcome)  # the same function, now a job type
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)  # in production: dependencies=[Depends(your_auth)]
    Queue = Annotated[equeue.QueueClient, Depends(equeue.get_queue)]

    @app.post("/before")
    async def before(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(send_welcome, email)  # gone if the process stops
        return {"queued": email}

    @app.post("/after")
    async def after(email: str, q: Queue) -> dict[str, str]:
        job = await q.enqueue("send_welcome", {"email": email})  # durable, retried
        return {"job_id": job.id}

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
    async with queue.lifespan(app), http:
        await http.post("/before", params={"email": "old@example.com"})
        job_id = (await http.post("/after", params={"email": "new@example.com"})).json()["job_id"]
        done = await queue.client.wait(job_id, timeout=10)
        shown = (await http.get(f"/jobs/{job_id}")).json()

    assert done.status is JobStatus.COMPLETED
    assert shown["payload"] == {"email": "new@example.com"}
    assert sorted(sent) == ["new@example.com", "old@example.com"]
