"""A task's dependency reaches what the host app's lifespan set up, through ``ctx.app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from fastapi_equeue import EQueue, JobContext


async def get_session(ctx: JobContext) -> AsyncIterator[AsyncSession]:
    """One session per attempt, closed when the attempt ends, whatever its outcome."""
    async with ctx.app.state.sessionmaker() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(database_url)
        app.state.sessionmaker = async_sessionmaker(engine)
        async with queue.lifespan(app):  # tasks see this app as ctx.app
            yield
        await engine.dispose()

    @queue.task
    async def add_in_sql(a: int, b: int, session: Session) -> int:
        total = await session.scalar(text("SELECT CAST(:a AS INTEGER) + :b"), {"a": a, "b": b})
        return int(total)

    app = FastAPI(lifespan=lifespan)
    async with app.router.lifespan_context(app):  # what a server does around serving
        # The payload is the task's own parameters: `session` is not part of it.
        job = await queue.client.enqueue("add_in_sql", {"a": 40, "b": 2})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.result == 42
    assert done.payload == {"a": 40, "b": 2}
