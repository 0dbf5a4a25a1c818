"""Fixtures of the example app tests: the example imported afresh on the test's database.

The example's modules read ``DATABASE_URL`` and ``EXAMPLE_*`` when they are imported, so
``load_example(**env)`` sets the environment, forgets every ``example_app`` module and imports
``example_app.main`` again. ``example`` does that with the mail server made reliable
(``EXAMPLE_FLAKINESS=0``) and runs the app as a server would: its own lifespan (tables, then
the queue and its workers) around an httpx client over ASGI.
"""

import importlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fastapi import FastAPI

from fastapi_equeue import EQueue

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_VARIABLES = (
    "DATABASE_URL",
    "EXAMPLE_FLAKINESS",
    "EXAMPLE_API_KEY",
    "EXAMPLE_RATE_LIMIT",
    "EQUEUE_CONCURRENCY",
    "HOST",
    "PORT",
)


@dataclass
class Example:
    """The example, imported on the test's database and running."""

    main: ModuleType
    tasks: ModuleType
    db: ModuleType
    http: httpx.AsyncClient

    @property
    def app(self) -> FastAPI:
        return self.main.app  # type: ignore[no-any-return]

    @property
    def queue(self) -> EQueue:
        return self.tasks.queue  # type: ignore[no-any-return]


LoadExample = Callable[..., AbstractAsyncContextManager[Example]]


def _forget_example() -> None:
    for name in [name for name in sys.modules if name.partition(".")[0] == "example_app"]:
        del sys.modules[name]


@pytest.fixture
def load_example(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadExample]:
    """``async with load_example(EXAMPLE_FLAKINESS="1.0"):`` imports the example afresh with
    ``DATABASE_URL`` on the test's database (and these variables), empties its tables and runs
    it. Its modules are forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))

    @asynccontextmanager
    async def load(**env: str) -> AsyncIterator[Example]:
        for variable in EXAMPLE_VARIABLES:
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("DATABASE_URL", database_url)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        _forget_example()
        main = importlib.import_module("example_app.main")
        db = sys.modules["example_app.db"]
        tasks = sys.modules["example_app.tasks"]
        assert database_url == db.DATABASE_URL
        # PostgreSQL keeps the example's tables from one test to the next: start from none.
        async with db.engine.begin() as conn:
            await conn.run_sync(db.Base.metadata.drop_all)
        transport = httpx.ASGITransport(app=main.app)
        try:
            # ASGITransport does not run lifespans: run the app's own, as a server would.
            async with (
                main.app.router.lifespan_context(main.app),
                httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
            ):
                yield Example(main=main, tasks=tasks, db=db, http=http)
        finally:
            async with db.engine.begin() as conn:
                await conn.run_sync(db.Base.metadata.drop_all)
            await db.engine.dispose()

    try:
        yield load
    finally:
        _forget_example()


@pytest.fixture
async def example(load_example: LoadExample) -> AsyncIterator[Example]:
    """The example running on the test's database, with a mail server that never fails."""
    async with load_example(EXAMPLE_FLAKINESS="0") as running:
        yield running
