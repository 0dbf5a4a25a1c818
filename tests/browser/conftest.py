"""Fixtures for the browser tests: the dashboard app served by uvicorn in a subprocess (once per
backend), a headless Chromium driven by Playwright, a page that watches what the browser logs
and fetches, and a REST client to set the scene.

- ``server``: ``uvicorn dashboard_app:app`` on ``127.0.0.1`` and a free port, on a database of
  its own (``server_database_url``: SQLite, then PostgreSQL), ready when ``GET /jobs/queues``
  answers; ``restart()`` serves the same database on the same port again. One server per
  module and backend (the tests of a module share it, each in queues of its own: see
  ``queue_name``); a module sets its environment by overriding ``server_env``. Always killed
  at the module's end; its log is printed when a test failed. ``start_worker()`` adds a
  standalone worker process (``python -m fastapi_equeue.worker dashboard_app:queue``) on the
  same database.
- ``queue_name``: a queue name of the test's own, so that tests sharing a server do not see
  each other's jobs.
- ``browser``: Debian's Chromium (``$EQ_CHROMIUM``, else ``/usr/bin/chromium``), headless,
  launched once for the browser tests. Without it, or without Playwright, the tests skip; with
  ``CI`` set (``CI=true``, as ``.ci/run`` does) they fail instead.
- ``page``: a new page (in a context of its own) per test. At teardown it asserts that every
  request went to the server's origin and that the console showed no error and no CSP
  violation (Chromium logs them as "Refused to ..."), but for the 404 of ``/favicon.ico``.
  ``page_log`` holds what was seen; ``page_log.allow(pattern)`` tolerates the console errors
  that match, ``page_log.allow_server_down()`` those of a stopped server (a restart drops the
  event stream). A failed test leaves ``failure.png`` in its ``tmp_path``.
- ``api``: an ``httpx.Client`` on the server's URL with ``enqueue``, ``submit``, ``job``,
  ``wait_for``, ``pause``, ``resume`` and ``queue_info``.
- ``until(condition, what=...)``: poll with a deadline; never a bare sleep.

Playwright's sync API cannot run inside a running event loop, and the suite runs in
``asyncio_mode = "auto"``: browser tests are plain ``def`` functions, and every fixture here is
a plain ``def`` one. Between two sync calls Playwright leaves its own loop marked as the
thread's running loop, which would stop any ``async def`` test after it from starting its
loop: the browser is therefore scoped to this package, and stopped once its last test is
over, before the rest of the suite goes on.

Every test in this folder is marked ``browser`` (``-m browser`` selects them,
``-m 'not browser'`` leaves them out).
"""

import asyncio
import contextlib
import inspect
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import BACKENDS, _blocking, admin
from tests.faults.harness import free_port
from tests.process.conftest import Worker, Workers

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request

APP_DIR = Path(__file__).parent
HOST = "127.0.0.1"
CHROMIUM_VARIABLE = "EQ_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]
POLL = 0.05
START_TIMEOUT = 30.0
"""Seconds for uvicorn to import the app, migrate the database and answer."""
STOP_TIMEOUT = 10.0
"""Seconds for uvicorn to stop on SIGTERM before it is killed."""
WAIT_TIMEOUT = 10.0
"""The default deadline of ``until`` and ``Api.wait_for``: jobs here take well under a second."""
GRACEFUL_SHUTDOWN = 2
"""uvicorn's bound on open connections (the dashboard's event stream) at shutdown."""
NOT_NETWORK = ("data:", "blob:", "about:")
"""URL schemes that fetch nothing from anywhere."""
ALWAYS_ALLOWED = (r"/favicon\.ico\)$",)
"""Console errors no test is about: Chromium asks for ``/favicon.ico`` (a 404) once per run,
from whichever page comes first that has no ``<link rel="icon">``."""
SERVER_DOWN = (r"net::ERR_", r"htmx:(sendError|afterRequest)")
"""What the console shows while the server is down: failed requests and htmx's reports of them."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytestmark in a conftest marks nothing: every test under this folder is marked here.
    for item in items:
        if item.path.is_relative_to(APP_DIR):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item, for fixtures to tell at teardown whether it failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test's setup or body failed (for a fixture, at its teardown)."""
    reports = (getattr(request.node, f"report_{when}", None) for when in ("setup", "call"))
    return any(report is not None and report.failed for report in reports)


def in_ci() -> bool:
    """Whether ``CI`` is set (to anything but an empty string, ``0``, ``false`` or ``no``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip the test for want of ``reason``, or fail it when running in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


def outside_event_loop(what: str) -> None:
    """Fail unless called with no running event loop, as Playwright's sync API needs."""
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        pytest.fail(
            f"{what} uses Playwright's sync API, which cannot run inside an event loop: "
            "write browser tests and their fixtures as plain `def` functions",
            pytrace=False,
        )


def until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float = WAIT_TIMEOUT,
    server: "Server | None" = None,
) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail after ``timeout`` seconds, or at once
    if the ``server`` process exits meanwhile, showing its log either way."""
    deadline = time.monotonic() + timeout
    while not condition():
        if server is not None and not server.alive():
            raise AssertionError(f"the server exited while waiting for {what}\n{server.output()}")
        if time.monotonic() > deadline:
            log = f"\n{server.output()}" if server is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{log}")
        time.sleep(POLL)


@dataclass(repr=False)
class Server:
    """``uvicorn dashboard_app:app`` on ``port``, on one database; started by ``start()``."""

    database_url: str
    port: int
    pool: Workers
    env: dict[str, str] = field(default_factory=dict)
    process: Worker | None = None
    starts: int = 0

    def __repr__(self) -> str:
        return f"<Server {self.base_url} on {self.database_url}>"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the origin every page and request must stay on."""
        return f"http://{HOST}:{self.port}"

    def dashboard(self, path: str = "") -> str:
        """The URL of a dashboard page: ``dashboard("/jobs?status=failed")``."""
        return f"{self.base_url}/jobs/dashboard{path}"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def start(self) -> None:
        """Start uvicorn (its log in ``dashboard-<n>.log``) and wait until it answers."""
        assert not self.alive(), "the server is already running"
        self.starts += 1
        command = [
            "-m", "uvicorn", "dashboard_app:app",
            "--host", HOST, "--port", str(self.port),
            "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN),
        ]  # fmt: skip
        env = {"EQUEUE_URL": self.database_url, **self.env}
        name = f"dashboard-{self.starts}"
        self.process = self.pool.spawn(name, command, env=env, app_dir=APP_DIR, session=True)
        until(self.ready, what="the server to answer", timeout=START_TIMEOUT, server=self)

    def ready(self) -> bool:
        try:
            response = httpx.get(f"{self.base_url}/jobs/queues", timeout=1.0, trust_env=False)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def stop(self) -> None:
        """Stop uvicorn: SIGTERM, then SIGKILL to its whole session after ``STOP_TIMEOUT``."""
        if self.process is None:
            return
        if self.process.alive():
            self.process.send(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.process.wait(STOP_TIMEOUT)
        self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.process.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop, then serve the same database on the same port again."""
        self.stop()
        self.start()

    def output(self) -> str:
        """The log of every start so far, and of the workers, oldest first."""
        return self.pool.output()

    def start_worker(self, name: str = "worker") -> Worker:
        """Start a standalone worker process (``python -m fastapi_equeue.worker
        dashboard_app:queue``) on the server's database, and wait until it serves."""
        command = ["-m", "fastapi_equeue.worker", "dashboard_app:queue"]
        env = {"EQUEUE_URL": self.database_url, **self.env}
        env.pop("EQUEUE_CONCURRENCY", None)  # the server's, not the worker's
        worker = self.pool.spawn(name, command, env=env, app_dir=APP_DIR, session=True)

        def serving() -> bool:
            if not worker.alive():
                raise AssertionError(f"{name} exited\n{worker.output()}")
            return worker.running()

        until(serving, what=f"{name} to serve", timeout=START_TIMEOUT)
        return worker


@pytest.fixture(scope="module", params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend under test, per module: a module's tests share one server per backend."""
    return str(request.param)


@pytest.fixture(scope="module")
def server_database_url(
    backend_name: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An empty database of the backend under test, for one module's server: a SQLite file, or
    a PostgreSQL database of its own on the test run's server, dropped at the module's end."""
    if backend_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('browser-db') / 'equeue.db'}"
        return
    run_url: str = request.getfixturevalue("postgres_url")
    name = f"equeue_browser_{uuid.uuid4().hex[:12]}"
    _blocking(admin(run_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(run_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _blocking(admin(run_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """The server's environment besides ``EQUEUE_URL``; a module overrides this fixture to
    serve the app otherwise (``EQUEUE_CONCURRENCY``, ``EQ_DASHBOARD_READ_ONLY``...)."""
    return {}


@pytest.fixture(scope="module")
def server(
    server_database_url: str, server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The dashboard app, served on a database of its own, for the module's tests (once per
    backend). A test that fails prints its log (see ``server_log_on_failure``)."""
    directory = tmp_path_factory.mktemp("server")
    served = Server(
        server_database_url, free_port(), Workers(server_database_url, directory), server_env
    )
    try:
        served.start()
        yield served
    finally:
        served.stop()
        served.pool.stop_all()


@pytest.fixture(autouse=True)
def server_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the log of the test's server (and its workers) when the test failed."""
    yield
    if "server" in request.fixturenames and failed(request):
        print(request.getfixturevalue("server").output())


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue of the test's own (tests share their module's server and database)."""
    return f"{request.node.originalname[5:40]}-{uuid.uuid4().hex[:6]}"


class Api(httpx.Client):
    """An ``httpx.Client`` on the server's URL, with the REST calls that set a scene up."""

    def enqueue(self, job_type: str, **payload: Any) -> dict[str, Any]:
        """``POST /jobs``; the job, as the API answers it (``["id"]``, ``["status"]``...)."""
        return self.submit(job_type, payload)

    def submit(self, job_type: str, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
        """``POST /jobs`` with enqueue ``options`` (``queue``, ``depends_on``, ``delay``...)."""
        body = {"job_type": job_type, "payload": payload, **options}
        response = self.post("/jobs", json=body)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def pause(self, queue: str) -> None:
        """``POST /jobs/queues/{name}/pause``."""
        response = self.post(f"/jobs/queues/{queue}/pause")
        assert response.status_code == 200, response.text

    def resume(self, queue: str) -> None:
        """``POST /jobs/queues/{name}/resume``."""
        response = self.post(f"/jobs/queues/{queue}/resume")
        assert response.status_code == 200, response.text

    def queue_info(self, queue: str) -> dict[str, Any]:
        """The queue, as ``GET /jobs/queues`` lists it."""
        response = self.get("/jobs/queues")
        assert response.status_code == 200, response.text
        found = [info for info in response.json() if info["name"] == queue]
        assert found, f"no queue {queue!r} in {response.json()}"
        info: dict[str, Any] = found[0]
        return info

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``."""
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_for(
        self, job_id: str, *statuses: str, timeout: float = WAIT_TIMEOUT
    ) -> dict[str, Any]:
        """Poll the job until its status is one of ``statuses``; the job then."""
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.job(job_id))
            return seen["status"] in statuses

        try:
            until(reached, what=f"job {job_id} to be {' or '.join(statuses)}", timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {seen}") from None
        return seen


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    """A REST client on the server (it follows the server through a restart)."""
    with Api(base_url=server.base_url, timeout=10.0, trust_env=False) as client:
        yield client


@pytest.fixture(scope="package")
def browser() -> Iterator["Browser"]:
    """Headless Chromium, shared by the browser tests, stopped after the last of them."""
    outside_event_loop("the browser fixture")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (the `test` dependency group has it)")
    # ``expect(...)`` waits as long as ``until`` does, not Playwright's default 5 seconds.
    expect.set_options(timeout=WAIT_TIMEOUT * 1000)
    executable = os.environ.get(CHROMIUM_VARIABLE, DEFAULT_CHROMIUM)
    if shutil.which(executable) is None:
        unavailable(f"no Chromium at {executable} (apt-get install chromium, or set EQ_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class PageLog:
    """What the page's browser logged and requested, checked at the page's teardown."""

    origin: str
    errors: list[str] = field(default_factory=list)
    """Console errors and uncaught exceptions."""
    warnings: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    """Every URL the page requested, in order."""
    allowed: list[re.Pattern[str]] = field(
        default_factory=lambda: [re.compile(pattern) for pattern in ALWAYS_ALLOWED]
    )

    def allow(self, pattern: str) -> None:
        """Tolerate the console errors (CSP violations included) that ``pattern`` matches
        (``re.search`` on ``"error: <text> (<url>)"``), for a test that provokes them."""
        self.allowed.append(re.compile(pattern))

    def allow_server_down(self) -> None:
        """Tolerate failed requests (the event stream's, htmx's), for a test that stops or
        restarts the server under an open page."""
        for pattern in SERVER_DOWN:
            self.allow(pattern)

    def on_console(self, message: "ConsoleMessage") -> None:
        text = f"{message.type}: {message.text} ({message.location.get('url', '')})"
        if message.type == "error":
            self.errors.append(text)
        elif message.type == "warning":
            self.warnings.append(text)

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")

    def on_request(self, request: "Request") -> None:
        self.requests.append(request.url)

    def csp_violations(self) -> list[str]:
        """The CSP violations the console showed (errors, or warnings in report-only mode)."""
        return [text for text in self.errors + self.warnings if "Refused to" in text]

    def problems(self) -> list[str]:
        """Requests to another origin, console errors and CSP violations not allowed."""
        foreign = [
            f"request to another origin: {url}"
            for url in self.requests
            if not url.startswith(NOT_NETWORK) and origin_of(url) != self.origin
        ]
        logged = dict.fromkeys(self.errors + self.csp_violations())
        unexpected = [
            text for text in logged if not any(pattern.search(text) for pattern in self.allowed)
        ]
        return foreign + [f"console {text}" for text in unexpected]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def page_log(server: Server) -> PageLog:
    """What the test's ``page`` logged and requested (see ``PageLog``)."""
    return PageLog(origin_of(server.base_url))


@pytest.fixture
def page(
    browser: "Browser", page_log: PageLog, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator["Page"]:
    """A new page, in a browser context of its own, watched by ``page_log``; checked at
    teardown (see the module docstring). A failed test leaves a screenshot in ``tmp_path``."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        pytest.fail("a browser test must be a plain `def` function (Playwright's sync API)")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_TIMEOUT * 1000)
    opened = context.new_page()
    opened.on("console", page_log.on_console)
    opened.on("pageerror", page_log.on_page_error)
    opened.on("request", page_log.on_request)
    try:
        yield opened
    finally:
        if failed(request):
            with contextlib.suppress(Exception):
                shot = tmp_path / "failure.png"
                opened.screenshot(path=shot, full_page=True)
                print(f"screenshot: {shot}")
        # Closing delivers the events still on their way.
        context.close()
    problems = page_log.problems()
    if failed(request):
        print("\n".join(["page log:", *problems, *page_log.warnings]))
    else:
        assert not problems, "\n".join(problems)
