import httpx
from fastapi import FastAPI

import fastapi_equeue as equeue
from fastapi_equeue.testing import drain


async def test_signup_sends_the_welcome_email(app: FastAPI, queue: equeue.EQueue) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
    async with queue.lifespan(app), http:
        response = await http.post("/signup")
        await drain(queue)  # runs every due job to its end, no sleeps
        job = await queue.client.get(response.json()["job_id"])
        assert job is not None
        assert job.status == "completed"
        assert job.result == {"delivered": True}
