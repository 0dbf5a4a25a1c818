"""No repr, error message, log line or REST answer shows the database password.

Every check gives the queue a URL holding ``PASSWORD`` and looks for it in everything the
package says: reprs, the exceptions it raises (with their tracebacks and causes), every log
record of every logger, and the bodies of the jobs API's answers while the database is down.
The local test server trusts every connection, so a wrong password cannot be tried: a wrong
database name and a wrong user take its place.
"""

import asyncio
import logging
import os
import threading
import traceback
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

import fastapi_equeue as equeue
from fastapi_equeue import EQueue
from fastapi_equeue.backend import BackendOptions
from fastapi_equeue.backends import normalise_url, open_backend
from fastapi_equeue.config import Config, redact_url
from fastapi_equeue.errors import ConfigurationError
from fastapi_equeue.testing import eventually
from tests.conftest import DEFAULT_ADMIN_URL, admin

PASSWORD = "s3cr3t-Pa55"
UNREACHABLE = f"postgresql+asyncpg://equeue:{PASSWORD}@127.0.0.1:1/equeue"
"""Nothing listens on port 1: every connection is refused."""
UNKNOWN_ID = "01a20f0e-dcf2-73b7-97b7-c956684f8f5c"


def assert_hidden(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text, text


def described(exc: BaseException) -> str:
    """Everything an exception can show: its message, repr, and traceback with its causes."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def logged(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter()
    return "\n".join(
        formatter.format(record) + repr(record.args) + repr(record.__dict__) for record in records
    )


@pytest.fixture
def server_url(request: pytest.FixtureRequest) -> str:
    """The test PostgreSQL server's admin URL; skips (or fails, with --require-postgres)
    without one."""
    url = os.environ.get("EQUEUE_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    try:
        # In a thread of its own: the async fixtures that need this one run on a loop.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, admin(url, "SELECT 1")).result()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL is unreachable at {make_url(url)!r}: {exc}"
        if request.config.getoption("--require-postgres"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def on_server(server_url: str, **changes: str) -> str:
    """A URL to the test server with ``PASSWORD`` and ``changes`` (database, username)."""
    url = make_url(server_url).set(drivername="postgresql+asyncpg", password=PASSWORD)
    return url.set(**changes).render_as_string(hide_password=False)  # type: ignore[arg-type]


@pytest.fixture(params=["unreachable-server", "unknown-database", "unknown-user", "sqlite"])
async def failing_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL holding ``PASSWORD`` that cannot be used: the server is down, the
    database or user does not exist, or (SQLite) its directory does not exist."""
    if request.param == "unreachable-server":
        yield UNREACHABLE
    elif request.param == "unknown-database":
        server = request.getfixturevalue("server_url")
        yield on_server(server, database=f"equeue_missing_{uuid.uuid4().hex[:12]}")
    elif request.param == "unknown-user":
        server = request.getfixturevalue("server_url")
        yield on_server(server, username=f"equeue_nobody_{uuid.uuid4().hex[:8]}")
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'equeue.db'}"
        # A failed aiosqlite connect leaves its thread to stop on its own: let it, while the
        # loop still runs.
        await eventually(_no_aiosqlite_threads, timeout=10)


async def _no_aiosqlite_threads() -> bool:
    return not any("_connection_worker_thread" in t.name for t in threading.enumerate())


class TestRedactUrl:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            (
                f"postgresql+asyncpg://app:{PASSWORD}@db:5432/jobs",
                "postgresql+asyncpg://app:***@db:5432/jobs",
            ),
            (
                f"postgresql://app@db/jobs?sslmode=require&password={PASSWORD}",
                "postgresql://app@db/jobs?sslmode=require&password=***",
            ),
            (
                f"postgresql://app@db/jobs?sslpassword={PASSWORD}",
                "postgresql://app@db/jobs?sslpassword=***",
            ),
            (f"postgresql://app:{PASSWORD}/x@db/jobs", "postgresql://app:***@db/jobs"),
            (f"postgresql://app:{PASSWORD}@x@db/jobs", "postgresql://app:***@db/jobs"),
            (f"app:{PASSWORD}@db/jobs", "app:***@db/jobs"),
            ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
            (
                "postgresql://db/jobs?application_name=a@b",
                "postgresql://db/jobs?application_name=a@b",
            ),
            ("sqlite+aiosqlite:///./equeue.db", "sqlite+aiosqlite:///./equeue.db"),
        ],
    )
    def test_hides_the_password_and_keeps_the_rest(self, url: str, shown: str) -> None:
        assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url", [UNREACHABLE, f"sqlite+aiosqlite:///./equeue.db?password={PASSWORD}"]
)
def test_reprs_hide_the_password(url: str) -> None:
    queue = EQueue(url, listen_url=UNREACHABLE, concurrency=0)
    options = BackendOptions(listen_url=UNREACHABLE)

    assert_hidden(repr(queue), str(queue), repr(queue.config), repr(options))
    assert "equeue:***@127.0.0.1:1" in repr(queue.config)


@pytest.mark.parametrize(
    "url",
    [
        f"equeue:{PASSWORD}@127.0.0.1/equeue",  # no scheme
        f"equeue:{PASSWORD}@127.0.0.1:/equeue",
    ],
)
def test_option_errors_hide_the_password(url: str) -> None:
    for build in (
        lambda: EQueue(url),
        lambda: EQueue("sqlite+aiosqlite:///./equeue.db", listen_url=url),
        lambda: Config(url),
    ):
        with pytest.raises(ConfigurationError) as caught:
            build()
        assert_hidden(described(caught.value))


@pytest.mark.parametrize(
    "url",
    [
        f"equeue:{PASSWORD}@127.0.0.1/equeue",
        f"mysql://equeue:{PASSWORD}@127.0.0.1/equeue",
        f"postgresql://equeue:{PASSWORD}@127.0.0.1:port/equeue",
        # Unencoded / ? # @ in the password: urllib and asyncpg would quote a piece of it, or
        # send it to another host as the database name.
        f"postgresql://equeue:{PASSWORD}:9x@y@127.0.0.1:5432/equeue",
        f"postgresql://equeue:{PASSWORD}/x@127.0.0.1:5432/equeue",
        f"postgresql://equeue:12/{PASSWORD}@127.0.0.1:5432/equeue",
        f"postgresql://equeue:12#{PASSWORD}@127.0.0.1:5432/equeue",
        f"postgresql://equeue:{PASSWORD}?x@127.0.0.1:5432/equeue",
    ],
)
def test_url_errors_hide_the_password(url: str) -> None:
    for build in (
        lambda: normalise_url(url),
        lambda: open_backend(url),
        lambda: open_backend(UNREACHABLE, BackendOptions(listen_url=url)),
    ):
        with pytest.raises(ConfigurationError) as caught:
            build()
        assert_hidden(described(caught.value))


async def test_starting_on_a_failing_database_says_nothing_of_the_password(
    failing_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A queue whose server is down starts and keeps trying, a log line per try: two tries are
    # awaited. An error that waiting will not cure is raised.
    caplog.set_level(logging.DEBUG)
    queue = EQueue(failing_url, listen_url=failing_url, poll_interval=0.05)
    texts = []

    async def tried_twice() -> bool:
        return sum(record.levelno >= logging.WARNING for record in caplog.records) >= 2

    try:
        async with queue:
            await eventually(tried_twice, timeout=10)
    except Exception as exc:
        texts.append(described(exc))

    assert_hidden(*texts, logged(caplog.records))


async def test_the_api_of_a_failing_database_says_nothing_of_the_password(
    failing_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Neither workers nor migrations: the app starts without touching the database, and every
    # request meets the failure. An outage answers 503; a database that will never serve (no
    # such database or user) is the app's own error, 500.
    caplog.set_level(logging.DEBUG)
    queue = EQueue(failing_url, concurrency=0, auto_migrate=False)

    @queue.task
    async def add(a: int, b: int) -> int:
        return a + b

    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        queue.lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        answers = [
            await http.post("/jobs", json={"job_type": "add", "payload": {"a": 1, "b": 2}}),
            await http.get(f"/jobs/{UNKNOWN_ID}"),
            await http.get("/jobs", params={"status": "failed"}),
            await http.get("/jobs/stats"),
            await http.post(f"/jobs/{UNKNOWN_ID}/cancel"),
        ]

    assert {answer.status_code for answer in answers} <= {500, 503}
    assert_hidden(
        *(answer.text for answer in answers),
        *(str(answer.headers) for answer in answers),
        logged(caplog.records),
    )


async def test_the_api_of_a_queue_started_without_its_database_answers_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With workers and migrations, the lifespan tries the database at once, and starts
    # without it when the server is down.
    caplog.set_level(logging.DEBUG)
    queue = EQueue(UNREACHABLE, poll_interval=0.05)
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    async with (
        queue.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        answer = await http.get(f"/jobs/{UNKNOWN_ID}")

    assert answer.status_code == 503
    assert_hidden(answer.text, logged(caplog.records))


async def test_an_outage_answer_never_echoes_the_driver_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever a driver puts in its message (here, the whole URL), the 503 and its log line
    # do not repeat it.
    caplog.set_level(logging.DEBUG)
    queue = EQueue(f"sqlite+aiosqlite:///{tmp_path / 'equeue.db'}", concurrency=0)
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)

    async def down(*_args: object, **_kwargs: object) -> None:
        raise ConnectionRefusedError(f"could not connect to {UNREACHABLE}")

    async with (
        queue.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        monkeypatch.setattr(queue.client, "get", down)
        answer = await http.get(f"/jobs/{UNKNOWN_ID}")

    assert answer.status_code == 503
    assert_hidden(answer.text, logged(caplog.records))
