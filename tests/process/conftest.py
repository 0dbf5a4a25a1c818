"""Fixtures for the process tests: an empty PostgreSQL database, standalone worker subprocesses
(always killed at teardown), and a look into the tables to wait on, with deadlines.

The workers run ``python -m fastapi_equeue.worker worker_app:queue`` from a temporary directory,
and find ``worker_app`` through ``PYTHONPATH``, which holds its folder and, for ``tests.apps``,
which every app imports, the repository root. ``Worker``, ``Workers`` and ``until`` serve the
other tests that start subprocesses too (``tests/faults``).
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Container,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from fastapi_equeue import EQueue, QueueClient
from tests.conftest import EMPTY_TABLES, pg_dsn
from tests.process.worker_app import build_queue

APP_DIR = Path(__file__).parent
REPO_ROOT = APP_DIR.parent.parent
TARGET = "worker_app:queue"
POLL = 0.05
# Deadlines for conditions that normally hold within a second or two; generous for a busy machine.
START_TIMEOUT = 30.0
KILL_WAIT = 10.0


def python_path(app_dir: Path) -> str:
    """``PYTHONPATH`` for a subprocess that runs an app of ``app_dir`` by its bare name: that
    folder, the repository root (for ``tests.apps``), then whatever ``PYTHONPATH`` we have."""
    inherited = filter(None, [os.environ.get("PYTHONPATH")])
    return os.pathsep.join([str(app_dir), str(REPO_ROOT), *inherited])


@dataclass
class Worker:
    """One subprocess (a standalone worker, or uvicorn), its ledger and its log; ``session``
    if it leads a session of its own, which ``kill()`` kills whole."""

    name: str
    process: subprocess.Popen[bytes]
    ledger: Path
    log: Path
    session: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tokens(self) -> list[str]:
        """The tokens of the tasks this process finished, in order."""
        if not self.ledger.exists():
            return []
        lines = self.ledger.read_text(encoding="utf-8").splitlines()
        assert all(line.endswith(f" {self.pid}") for line in lines), lines[:5]
        return [line.split(" ", 1)[0] for line in lines]

    def running(self) -> bool:
        """Whether the worker serves (it logs so once its runtime is up): its whole log, not
        only its end, which a chatty worker soon pushes the line out of."""
        return "worker running" in self.text()

    def text(self) -> str:
        """The whole of the worker's stdout and stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def output(self, limit: int = 6000) -> str:
        """The end of the worker's stdout and stderr, for failure messages."""
        return f"--- {self.name} (pid {self.pid}) output ---\n{self.text()[-limit:]}"

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the process, or its whole session (children that outlived it included)."""
        if self.session:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        elif self.alive():
            self.process.kill()

    async def exited(self, timeout: float) -> int:
        """Wait (polling, without blocking the loop) for the process to exit; its return code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (code := self.process.poll()) is None:
            if loop.time() > deadline:
                raise AssertionError(f"{self.name} did not exit within {timeout}s\n{self.output()}")
            await asyncio.sleep(POLL)
        return code


@dataclass
class Workers:
    """Starts worker subprocesses against one database (``start``), or any app's subprocess
    (``spawn``); the fixture kills leftovers."""

    database_url: str
    directory: Path
    started: list[Worker] = field(default_factory=list)

    @property
    def executions(self) -> Path:
        """The file every worker's ``timed`` tasks record their runs in."""
        return self.directory / "executions"

    def start(self, name: str, *args: str, database_url: str | None = None, **env: str) -> Worker:
        """Start ``python -m fastapi_equeue.worker worker_app:queue *args``, on the fixture's
        database or ``database_url``.

        ``env`` adds variables such as ``EQUEUE_STALLED_AFTER`` or ``LONG_SECONDS``.
        """
        defaults = {
            "EQUEUE_URL": database_url or self.database_url,
            "EQUEUE_EXECUTIONS": str(self.executions),
        }
        command = ["-m", "fastapi_equeue.worker", TARGET, *args]
        return self.spawn(name, command, env={**defaults, **env})

    def spawn(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: dict[str, str],
        app_dir: Path = APP_DIR,
        session: bool = False,
    ) -> Worker:
        """Start ``python *command`` in the directory, with ``app_dir`` on ``PYTHONPATH`` (see
        ``python_path``), its output in ``<name>.log`` and ``EQUEUE_LEDGER`` set to
        ``<name>.ledger``; ``env`` adds variables (or overrides those). With ``session``, the
        process leads a new session, so that ``stop_all`` kills its children too."""
        ledger = self.directory / f"{name}.ledger"
        log = self.directory / f"{name}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": python_path(app_dir),
            "PYTHONUNBUFFERED": "1",
            "EQUEUE_LEDGER": str(ledger),
            **env,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *command],
                cwd=self.directory,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=session,
            )
        worker = Worker(name, process, ledger, log, session)
        self.started.append(worker)
        return worker

    def output(self) -> str:
        return "\n".join(worker.output() for worker in self.started)

    async def until(
        self,
        condition: Callable[[], Awaitable[bool]],
        *,
        what: str,
        timeout: float = START_TIMEOUT,
        alive: Sequence[Worker] | None = None,
    ) -> None:
        """Poll ``condition`` every 50 ms until it holds; fail after ``timeout`` seconds, or at
        once if one of the ``alive`` workers (by default: every one started) exits meanwhile."""
        watched = self.started if alive is None else alive
        await until(condition, what=what, timeout=timeout, watch=watched, report=self.output)

    async def serving(self, *workers: Worker) -> None:
        """Wait until every one of ``workers`` serves (by its log: any database)."""

        async def all_running() -> bool:
            return all(worker.running() for worker in workers)

        await self.until(all_running, what="the workers to start", alive=workers)

    def stop_all(self) -> None:
        for worker in self.started:
            worker.kill()
        for worker in self.started:
            # SIGKILL cannot be ignored; the bound only keeps a stuck kernel from hanging the run.
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(KILL_WAIT)


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    timeout: float,
    watch: Iterable[Worker],
    report: Callable[[], str],
    spared: Container[int] = (),
) -> None:
    """Poll ``condition`` (plain or async) every 50 ms until it holds. Fail at once if one of
    the ``watch`` processes exits meanwhile with a code not in ``spared`` (such as
    ``-signal.SIGKILL`` for processes the test kills), showing its output; fail after
    ``timeout`` seconds, showing ``report()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        for worker in watch:
            code = worker.process.poll()
            if code is not None and code not in spared:
                raise AssertionError(
                    f"{worker.name} exited with {code} while waiting for {what}\n{worker.output()}"
                )
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{report()}")
        await asyncio.sleep(POLL)


class Database:
    """Read-only look at the queue's tables, and waiting for a condition on them."""

    def __init__(self, conn: asyncpg.Connection, workers: Workers) -> None:
        self._conn = conn
        self._workers = workers

    async def counts(self) -> Counter[str]:
        """Jobs per status."""
        rows = await self._conn.fetch(
            "SELECT status, count(*) AS n FROM equeue_jobs GROUP BY status"
        )
        return Counter({row["status"]: row["n"] for row in rows})

    async def processing_by(self, worker: Worker) -> int:
        """How many jobs are processing in ``worker``'s process (its row names its pid)."""
        count: int = await self._conn.fetchval(
            """
            SELECT count(*)
            FROM equeue_jobs AS j JOIN equeue_workers AS w ON w.id = j.worker_id
            WHERE j.status = 'processing' AND w.pid = $1
            """,
            worker.pid,
        )
        return count

    async def registered(self, worker: Worker) -> bool:
        """Whether ``worker`` has registered (it is connected and about to claim)."""
        found: bool = await self._conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM equeue_workers WHERE pid = $1)", worker.pid
        )
        return found

    async def until(
        self,
        condition: Callable[[], Awaitable[bool]],
        *,
        what: str,
        timeout: float = START_TIMEOUT,
        alive: Sequence[Worker] = (),
    ) -> None:
        """Poll ``condition`` every 50 ms until it holds; fail after ``timeout`` seconds (with
        the jobs' counts), or at once if one of the ``alive`` workers exits meanwhile."""
        try:
            await self._workers.until(condition, what=what, timeout=timeout, alive=alive)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\njobs: {dict(await self.counts())}") from None

    async def ready(self, *workers: Worker) -> None:
        """Wait until every one of ``workers`` has registered."""

        async def all_registered() -> bool:
            return all([await self.registered(worker) for worker in workers])

        await self.until(all_registered, what="the workers to register", alive=workers)


async def _migrate_and_empty(url: str) -> None:
    # Starting an enqueue-only queue applies the schema; then every table starts empty.
    async with EQueue(url, concurrency=0):
        pass
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        await conn.execute(EMPTY_TABLES)
    finally:
        await conn.close()


@pytest.fixture
async def process_url(postgres_url: str) -> str:
    """The run's PostgreSQL database, migrated, with no jobs and no workers."""
    await _migrate_and_empty(postgres_url)
    return postgres_url


@pytest.fixture
def workers(process_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Start worker subprocesses; whatever still runs at teardown is killed and reaped."""
    pool = Workers(process_url, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
async def db(process_url: str, workers: Workers) -> AsyncIterator[Database]:
    """A look into the tables (a dedicated asyncpg connection)."""
    conn = await asyncpg.connect(pg_dsn(process_url), timeout=5)
    try:
        yield Database(conn, workers)
    finally:
        await conn.close()


@pytest.fixture
async def client(process_url: str) -> AsyncIterator[QueueClient]:
    """An enqueue-only queue (concurrency 0) with the workers' tasks, started."""
    queue = build_queue(process_url, concurrency=0, poll_interval=POLL)
    async with queue:
        yield queue.client
