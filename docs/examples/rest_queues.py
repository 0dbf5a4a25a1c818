"""The queue routes of the jobs API: list, pause, resume, and set limits over HTTP."""

import httpx
from fastapi import FastAPI

import fastapi_equeue as equeue


async def main(database_url: str) -> None:
    queue = equeue.EQueue(database_url, concurrency=0)

    @queue.task(queue="emails")
    async def send_email(to: str) -> None: ...

    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)  # protect it: dependencies=[Depends(your_auth)]

    async with queue.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            await queue.client.enqueue("send_email", {"to": "a@example.com"})

            paused = await http.post("/jobs/queues/emails/pause")
            assert paused.json()["paused"] is True

            limited = await http.patch("/jobs/queues/emails", json={"concurrency": 5})
            assert limited.json()["concurrency"] == 5

            bad = await http.patch("/jobs/queues/emails", json={"rate": "lots"})
            assert bad.status_code == 422
            assert bad.json()["detail"][0]["loc"] == ["body", "rate"]

            listed = await http.get("/jobs/queues")
            (emails,) = listed.json()
            assert emails["counts"]["queued"] == 1

            await http.post("/jobs/queues/emails/resume")
