import os
from typing import Annotated

from fastapi import Depends, FastAPI

import fastapi_equeue as equeue

# postgresql+asyncpg://app@db/app, or sqlite+aiosqlite:///./equeue.db on a laptop
queue = equeue.EQueue(os.environ["DATABASE_URL"])


@queue.task(max_attempts=3, timeout=30)
async def send_email(recipient_email: str, subject: str, body: str) -> dict[str, bool]:
    ...  # talk to the mail provider
    return {"delivered": True}


app = FastAPI(lifespan=queue.lifespan)  # connects, migrates, runs the workers
app.include_router(equeue.router)  # the /jobs REST API and the dashboard


@app.post("/signup")
async def signup(q: Annotated[equeue.QueueClient, Depends(equeue.get_queue)]) -> dict[str, str]:
    job = await q.enqueue(
        "send_email", {"recipient_email": "a@example.com", "subject": "Hi", "body": "..."}
    )
    return {"job_id": job.id}
