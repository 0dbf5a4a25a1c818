"""The example's queue and its job types.

``send_email`` fails now and then (the simulated mail server is flaky) to show retries,
``generate_report`` is slow (it reports its progress, takes its database session from a
dependency, and runs every hour on a schedule), and ``charge_card`` always fails, to show the
failed state and a manual retry (``POST /jobs/{id}/retry``).
"""

import asyncio
import os
import random
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import fastapi_equeue as equeue
from example_app.db import DATABASE_URL, OutboxMessage, Session, User

queue = equeue.EQueue(
    DATABASE_URL,
    # EQUEUE_CONCURRENCY=0 makes the web app enqueue only; run the workers with
    # `python -m fastapi_equeue.worker example_app.tasks:queue`.
    concurrency=int(os.environ.get("EQUEUE_CONCURRENCY", "4")),
    rate_limit=os.environ.get("EXAMPLE_RATE_LIMIT", "50/second"),
)

FLAKINESS = float(os.environ.get("EXAMPLE_FLAKINESS", "0.3"))


class MailServerUnavailable(Exception):
    """The (simulated) mail server did not answer."""


class PaymentDeclined(Exception):
    """The (simulated) card was declined."""


@queue.task(max_attempts=5, timeout=30, retry_delay=1.0)
async def send_email(recipient_email: str, subject: str, body: str) -> dict[str, object]:
    """Deliver an email to the outbox table; the mail server fails about one time in three."""
    await asyncio.sleep(0.1)
    if random.random() < FLAKINESS:
        raise MailServerUnavailable("the mail server timed out; the job will retry")
    async with Session.begin() as session:
        user_id = await session.scalar(select(User.id).where(User.email == recipient_email))
        message = OutboxMessage(
            recipient_email=recipient_email, subject=subject, body=body, user_id=user_id
        )
        session.add(message)
        await session.flush()
        return {"delivered": True, "outbox_id": message.id}


async def get_session(ctx: equeue.JobContext) -> AsyncIterator[AsyncSession]:
    """A database session for one attempt, closed when it ends, from the sessionmaker the
    app's lifespan put on ``app.state`` (a standalone worker runs no app: the module's own)."""
    sessionmaker = Session if ctx.app is None else ctx.app.state.sessionmaker
    async with sessionmaker() as session:
        yield session


@queue.task(queue="reports", timeout=120)
async def generate_report(
    session: Annotated[AsyncSession, Depends(get_session)],
    ctx: equeue.JobContext,
    title: str = "Signups",
    seconds: float = 5.0,
) -> dict[str, object]:
    """A slow job: counts the users after ``seconds`` of pretend number crunching, reporting
    its progress (see ``progress`` at ``GET /jobs/{id}``)."""
    steps = 10
    for step in range(1, steps + 1):
        await asyncio.sleep(max(0.0, min(seconds, 60.0)) / steps)
        await ctx.progress(step / steps, f"crunched {step} of {steps} batches")
    users = await session.scalar(select(func.count()).select_from(User))
    emails = await session.scalar(select(func.count()).select_from(OutboxMessage))
    return {"title": title, "users": users, "emails_sent": emails}


# Every worker process runs the schedule; the database lets exactly one enqueue each tick.
# GET /jobs/schedules shows it, with its next run.
queue.periodic("0 * * * *", "generate_report", {"title": "Hourly", "seconds": 1.0}, name="hourly")


@queue.task(max_attempts=2, retry_delay=1.0)
def charge_card(customer_email: str, amount_cents: int) -> None:
    """Always declined: ends ``failed`` with both attempts' errors, ready for a manual retry."""
    raise PaymentDeclined(f"card of {customer_email} declined for {amount_cents} cents")
