"""The example app: users sign up, and their welcome email is enqueued in the same transaction.

Run it with ``python -m example_app`` (or ``nox -s example``), then open
http://127.0.0.1:8000/docs. ``DATABASE_URL`` switches it to PostgreSQL.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

import fastapi_equeue as equeue
from example_app.db import OutboxMessage, Session, User, create_tables
from example_app.tasks import queue

Queue = Annotated[equeue.QueueClient, Depends(equeue.get_queue)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the example's tables, then run the queue (and its workers) with the app; its
    tasks reach what is set up here through ``JobContext.app``."""
    await create_tables()
    app.state.sessionmaker = Session
    async with queue.lifespan(app):
        yield


def api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Protects the jobs API when EXAMPLE_API_KEY is set (open otherwise, for the demo).

    A header suits API clients; a browser on the dashboard sends cookies, so a real app guards
    the router with what its sessions use.
    """
    expected = os.environ.get("EXAMPLE_API_KEY")
    if expected and x_api_key != expected:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong X-API-Key")


app = FastAPI(
    title="fastapi_equeue example",
    description="Sign up a user: the welcome email is a job. Watch it under /jobs.",
    lifespan=lifespan,
)
app.include_router(equeue.router, dependencies=[Depends(api_key)])


class SignupIn(BaseModel):
    """A new user."""

    email: str = Field(pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$", max_length=320)
    # Short enough for "Welcome, {name}!" to fit the outbox's subject column.
    name: str = Field(min_length=1, max_length=180, pattern=r"^[^\x00]+$")


class SignupOut(BaseModel):
    """The new user, and the job that sends their welcome email."""

    user_id: int
    welcome_job_id: str


class UserOut(BaseModel):
    """A user."""

    id: int
    email: str
    name: str


class OutboxOut(BaseModel):
    """An email that was delivered."""

    id: int
    recipient_email: str
    subject: str


@app.post("/signup", status_code=status.HTTP_201_CREATED)
async def signup(body: SignupIn, q: Queue) -> SignupOut:
    """Create the user and enqueue the welcome email in one transaction: both or neither."""
    async with Session() as session:
        try:
            async with session.begin():
                user = User(email=body.email, name=body.name)
                session.add(user)
                await session.flush()
                job = await q.enqueue(
                    "send_email",
                    {
                        "recipient_email": body.email,
                        "subject": f"Welcome, {body.name}!",
                        "body": "Thanks for signing up.",
                    },
                    session=session,
                )
        except IntegrityError:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "this email is already signed up"
            ) from None
    return SignupOut(user_id=user.id, welcome_job_id=job.id)


@app.post("/reports", status_code=status.HTTP_202_ACCEPTED)
async def request_report(q: Queue, title: str = "Signups") -> equeue.Job:
    """Start the slow report; follow it at /jobs/{id} or wait at /jobs/{id}/result?wait=30."""
    return await q.enqueue("generate_report", {"title": title})


@app.get("/users")
async def list_users() -> list[UserOut]:
    """Everyone who signed up."""
    async with Session() as session:
        users = await session.scalars(select(User).order_by(User.id))
        return [UserOut(id=u.id, email=u.email, name=u.name) for u in users]


@app.get("/outbox")
async def list_outbox() -> list[OutboxOut]:
    """The emails delivered so far."""
    async with Session() as session:
        messages = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [
            OutboxOut(id=m.id, recipient_email=m.recipient_email, subject=m.subject)
            for m in messages
        ]
