"""Fixtures of the REST API tests: an app with ``equeue.router`` mounted, driven through httpx.

``serve_api(**options)`` builds a queue on the test's database (``make_queue``), registers the
tasks below, mounts the router on a fresh FastAPI app and runs the queue's lifespan around an
``httpx.AsyncClient`` over ``ASGITransport`` (which does not run lifespans itself). Keywords
``prefix`` and ``dependencies`` go to ``include_router``; ``app`` mounts nothing and serves
that app instead; ``tasks(queue)`` registers more tasks; every other keyword is an ``EQueue``
option.

``outage_database`` gives a database of the backend under test that the test can take down
while a queue is connected to it.
"""

import asyncio
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.params import Depends
from sqlalchemy.engine import make_url

import fastapi_equeue as equeue
from fastapi_equeue import EQueue
from fastapi_equeue.testing import eventually
from tests.conftest import admin

UNKNOWN_ID = "01a20f0e-dcf2-73b7-97b7-c956684f8f5c"
"""A well-formed id that no job has."""


@dataclass
class Gate:
    """Holds every ``hold`` job until ``release`` is set; ``started`` once one is running."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Served:
    """A running app: its queue, the app, an HTTP client to it, and the ``hold`` tasks' gate."""

    queue: EQueue
    app: FastAPI
    http: httpx.AsyncClient
    gate: Gate


ServeApi = Callable[..., AbstractAsyncContextManager[Served]]


def add_tasks(queue: EQueue) -> Gate:
    """Register ``add``, ``fail``, ``hold``, ``flaky``, ``echo`` and ``slow_add`` on ``queue``."""
    gate = Gate()

    @queue.task
    async def add(a: int, b: int) -> int:
        """Add two integers.

        The sum is the job's result.
        """
        return a + b

    @queue.task(max_attempts=1)
    async def fail(reason: str = "boom") -> None:
        """Fail at once, with ``reason``."""
        raise RuntimeError(reason)

    @queue.task
    async def hold() -> str:
        """Run until the test opens the gate."""
        gate.started.set()
        try:
            await gate.release.wait()
        except asyncio.CancelledError:
            gate.interrupted.set()
            raise
        return "released"

    @queue.task(max_attempts=3, retry_delay=3600)
    async def flaky() -> None:
        """Fail, and be retried an hour later."""
        raise ValueError("later")

    @queue.task
    async def echo(text: str) -> str:
        """Return ``text``."""
        return text

    @queue.task
    async def slow_add(a: int, b: int, seconds: float) -> int:
        """Add two integers after ``seconds`` of work."""
        await asyncio.sleep(seconds)
        return a + b

    return gate


def http_client(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """An HTTP client that calls ``app`` in this process; with ``raise_app_exceptions=False``
    an unhandled error is a 500 response, as a server would send, instead of an exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def mount(prefix: str = "", dependencies: Sequence[Depends] = ()) -> FastAPI:
    """A fresh app with the jobs router mounted."""
    app = FastAPI()
    app.include_router(equeue.router, prefix=prefix, dependencies=list(dependencies))
    return app


@pytest.fixture
def serve_api(make_queue: Callable[..., EQueue]) -> ServeApi:
    """Start a queue with the test tasks behind an app that mounts the router (see module doc)."""

    @asynccontextmanager
    async def serve(
        *,
        app: FastAPI | None = None,
        prefix: str = "",
        dependencies: Sequence[Depends] = (),
        tasks: Callable[[EQueue], object] | None = None,
        **options: Any,
    ) -> AsyncIterator[Served]:
        queue = make_queue(**options)
        gate = add_tasks(queue)
        if tasks is not None:
            tasks(queue)
        if app is None:
            app = mount(prefix, dependencies)
        try:
            async with queue.lifespan(app), http_client(app) as http:
                yield Served(queue=queue, app=app, http=http, gate=gate)
        finally:
            gate.release.set()

    return serve


# -- a database that goes down ----------------------------------------------------------------


class TcpProxy:
    """Forwards local connections to ``host:port`` until ``stop``, which also cuts open ones:
    to a client, the database server has gone away."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free local port and return it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Refuse new connections and close the open ones."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@dataclass
class OutageDatabase:
    """A database URL, and ``take_down(queue)`` that makes that database unreachable."""

    url: str
    take_down: Callable[[EQueue], Awaitable[None]]


async def _no_aiosqlite_threads() -> bool:
    return not any("_connection_worker_thread" in t.name for t in threading.enumerate())


@pytest.fixture
async def outage_database(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[OutageDatabase]:
    """A fresh database of the backend under test that ``take_down`` makes unreachable.

    PostgreSQL is reached through a TCP proxy that ``take_down`` stops: connections are cut and
    new ones refused, as when the server is down. SQLite lives in a directory that
    ``take_down`` removes after the queue's pooled connections are closed, so that new ones
    cannot open the file.
    """
    if backend_name == "sqlite":
        directory = tmp_path / "outage"
        directory.mkdir()

        async def remove_file(queue: EQueue) -> None:
            backend = queue._backend
            assert backend is not None, "start the queue first"
            await backend.close()  # only closes the pool: the engine opens new connections
            shutil.rmtree(directory)

        yield OutageDatabase(f"sqlite+aiosqlite:///{directory / 'equeue.db'}", remove_file)
        # A failed aiosqlite connect stops its thread without waiting; let those threads end
        # while the loop still runs, or they report to a closed loop.
        await eventually(_no_aiosqlite_threads, timeout=10)
        return

    server_url = make_url(request.getfixturevalue("postgres_url"))
    name = f"equeue_outage_{uuid.uuid4().hex[:12]}"
    server = server_url.render_as_string(hide_password=False)
    await admin(server, f'CREATE DATABASE "{name}"')
    proxy = TcpProxy(server_url.host or "127.0.0.1", server_url.port or 5432)
    port = await proxy.start()

    async def stop_proxy(_queue: EQueue) -> None:
        await proxy.stop()

    try:
        url = server_url.set(host="127.0.0.1", port=port, database=name)
        yield OutageDatabase(url.render_as_string(hide_password=False), stop_proxy)
    finally:
        await proxy.stop()
        await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
