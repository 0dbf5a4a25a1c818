"""SQLite under pressure, with real processes on one file: the REST API under ``uvicorn`` (with
in-process workers) and a standalone worker take a storm of concurrent writes without a
"database is locked" anywhere; processes killed mid-write leave a file that the next ones
recover, losing no job.

SQLite only: these are about SQLite's one write lock and its write-ahead log. Every wait polls
the file or the API against a deadline; no assertion is about time.
"""

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.harness import free_port
from tests.process.conftest import KILL_WAIT, Worker, Workers
from tests.process.conftest import until as until_held

pytestmark = pytest.mark.process

CONCURRENCY = 50
DEADLINE = 30.0
# Lines that no process may ever log: SQLite's lock error, a 500's traceback, a crashed loop.
FORBIDDEN = ("database is locked", "Exception in ASGI application", "crashed", "malformed")
# The time in seconds since the epoch, in SQL (unixepoch('subsec') needs SQLite 3.42).
NOW = "(julianday('now') - 2440587.5) * 86400"
FINAL = frozenset({"completed", "failed", "cancelled"})


class Processes(Workers):
    """The API and worker subprocesses of one test, on one SQLite file (``equeue.db`` in the
    directory, the pool's database); all killed at teardown."""

    @property
    def database(self) -> Path:
        return self.directory / "equeue.db"

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> Worker:
        shared = {"EQUEUE_URL": self.database_url, "EQUEUE_MARKS": str(self.directory / "marks")}
        return self.spawn(name, command, env={**shared, **env})

    def api(self, name: str, port: int, **env: str) -> Worker:
        """``uvicorn sqlite_app:app`` on ``127.0.0.1:port``.

        Its keep-alive outlasts the test: with uvicorn's 5 s, a connection left idle while the
        test waits can be closed by the server just as the client reuses it (a ``ReadError``
        that says nothing about the queue).
        """
        command = ["-m", "uvicorn", "sqlite_app:app", "--host", "127.0.0.1", "--port", str(port)]
        options = ["--timeout-keep-alive", "300", "--no-access-log", "--log-level", "info"]
        return self._start(name, [*command, *options], env)

    def worker(self, name: str, **env: str) -> Worker:
        """``python -m fastapi_equeue.worker sqlite_app:queue``."""
        return self._start(name, ["-m", "fastapi_equeue.worker", "sqlite_app:queue"], env)

    def forbidden_lines(self) -> list[str]:
        """Every logged line, in any process, that names a forbidden error."""
        return [
            f"{process.name}: {line}"
            for process in self.started
            if process.log.exists()
            for line in process.text().splitlines()
            if any(word in line for word in FORBIDDEN)
        ]

    def jobs_summary(self) -> str:
        """The jobs per status, and the first unfinished ones, for failure messages."""
        if not self.database.exists():
            return "no database"
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as conn:
            try:
                counts = conn.execute(
                    "SELECT status, count(*) FROM equeue_jobs GROUP BY status"
                ).fetchall()
                unfinished = conn.execute(
                    "SELECT json_extract(payload, '$.token'), status, attempts, worker_id,"
                    f" scheduled_at / 1e6 - {NOW}, cancel_requested"
                    " FROM equeue_jobs WHERE status NOT IN ('completed', 'failed', 'cancelled')"
                    " LIMIT 10"
                ).fetchall()
                workers = conn.execute(
                    f"SELECT id, pid, last_beat_at / 1e6 - {NOW} FROM equeue_workers"
                ).fetchall()
            except sqlite3.Error as exc:
                return f"could not read the jobs: {exc!r}"
        return (
            f"jobs: {dict(counts)}\nunfinished (token, status, attempts, worker, due in, "
            f"cancel): {unfinished}\nworkers (id, pid, beat): {workers}"
        )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Processes on ``equeue.db``, which holds the host's ``signups`` table already."""
    (tmp_path / "marks").mkdir()
    database = tmp_path / "equeue.db"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute("CREATE TABLE signups (token TEXT PRIMARY KEY)")
        conn.commit()
    pool = Processes(f"sqlite+aiosqlite:///{database}", tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


class Look:
    """A reading connection to the file, opened only while the test looks."""

    def __init__(self, database: Path) -> None:
        self._conn = sqlite3.connect(database, timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self._conn.close()

    def jobs(self) -> dict[str, sqlite3.Row]:
        """Every job by its payload's token."""
        rows = self._conn.execute(
            "SELECT json_extract(payload, '$.token') AS token, * FROM equeue_jobs"
        ).fetchall()
        tokens = Counter(row["token"] for row in rows)
        assert [token for token, n in tokens.items() if n > 1] == []
        return {row["token"]: row for row in rows}

    def statuses(self, prefix: str) -> Counter[str]:
        rows = self._conn.execute(
            "SELECT status, count(*) FROM equeue_jobs "
            "WHERE json_extract(payload, '$.token') LIKE :prefix || '%' GROUP BY status",
            {"prefix": prefix},
        )
        return Counter({row[0]: row[1] for row in rows})

    def processing_by(self, process: Worker) -> int:
        (count,) = self._conn.execute(
            "SELECT count(*) FROM equeue_jobs AS j JOIN equeue_workers AS w ON w.id = j.worker_id"
            " WHERE j.status = 'processing' AND w.pid = ?",
            (process.pid,),
        ).fetchone()
        return int(count)

    def unfinished(self) -> int:
        (count,) = self._conn.execute(
            "SELECT count(*) FROM equeue_jobs WHERE status NOT IN (?, ?, ?)", sorted(FINAL)
        ).fetchone()
        return int(count)

    def signups(self) -> set[str]:
        return {token for (token,) in self._conn.execute("SELECT token FROM signups")}

    def integrity(self) -> list[str]:
        return [row[0] for row in self._conn.execute("PRAGMA integrity_check")]


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    processes: Processes,
    timeout: float = DEADLINE,
) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail after ``timeout`` seconds, or at once
    if one of the started processes that is not killed exits meanwhile."""

    def report() -> str:
        return f"{processes.jobs_summary()}\n{processes.output()}"

    await until_held(
        condition,
        what=what,
        timeout=timeout,
        watch=processes.started,
        report=report,
        spared={-signal.SIGKILL},
    )


@contextlib.asynccontextmanager
async def http_client(port: int) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=DEADLINE
    ) as http:
        yield http


async def serving(http: httpx.AsyncClient, api: Worker, processes: Processes) -> None:
    """Wait until the API answers (its lifespan has connected and migrated)."""

    async def answers() -> bool:
        if not api.alive():
            return False
        try:
            return (await http.get("/jobs/stats")).status_code == 200
        except httpx.TransportError:
            return False

    await until(answers, what=f"{api.name} to serve", processes=processes)


@dataclass
class Calls:
    """Every request made, as ``(kind, status)``; at most ``CONCURRENCY`` at once."""

    http: httpx.AsyncClient
    made: list[tuple[str, int]] = field(default_factory=list)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENCY))

    async def call(self, kind: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async with self.slots:
            response = await self.http.request(method, url, **kwargs)
        self.made.append((kind, response.status_code))
        return response

    async def submit(self, kind: str, job_type: str, token: str, **options: Any) -> httpx.Response:
        payload: dict[str, Any] = {"token": token}
        if "payload_seconds" in options:
            payload["seconds"] = options.pop("payload_seconds")
        body = {"job_type": job_type, "payload": payload, **options}
        return await self.call(kind, "POST", "/jobs", json=body)

    async def created(self, job_type: str, token: str, **options: Any) -> str:
        """Submit a job that the test goes on with; its id."""
        response = await self.submit("submit", job_type, token, **options)
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        return job_id

    def statuses(self) -> dict[str, Counter[int]]:
        by_kind: dict[str, Counter[int]] = {}
        for kind, status in self.made:
            by_kind.setdefault(kind, Counter())[status] += 1
        return by_kind


def ledger(*processes: Worker) -> Counter[str]:
    """How many times each token's task body finished, across ``processes``."""
    return Counter(token for process in processes for token in process.tokens())


async def test_api_and_worker_take_concurrent_writes_on_one_file(processes: Processes) -> None:
    port = free_port()
    # Both start at once on a new file: they race to switch it to WAL and to migrate it.
    api = processes.api("api", port, EQUEUE_CONCURRENCY="4")
    worker = processes.worker("worker", EQUEUE_CONCURRENCY="8")
    async with http_client(port) as http:
        await serving(http, api, processes)
        await until(worker.running, what="the worker to run", processes=processes)
        calls = Calls(http)
        started = time.monotonic()

        async def cancelled_then_retried(n: int) -> None:
            job_id = await calls.created("quick", f"d{n}", delay=3600)
            cancelled = await calls.call("cancel", "POST", f"/jobs/{job_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled", cancelled.text
            if n % 2 == 0:
                await calls.call("retry", "POST", f"/jobs/{job_id}/retry")

        async def cancelled_in_flight(n: int) -> None:
            # Cancelled while queued, while running (in either process) or too late.
            job_id = await calls.created("nap", f"c{n}", payload_seconds=2)
            await calls.call("cancel in flight", "POST", f"/jobs/{job_id}/cancel")

        async def submitted_then_read(n: int) -> None:
            job_id = await calls.created("quick_sync", f"r{n}")
            await calls.call("read", "GET", f"/jobs/{job_id}")

        first_wave = [
            *(calls.submit("submit", "quick", f"q{n}") for n in range(300)),
            *(submitted_then_read(n) for n in range(100)),
            *(calls.submit("submit", "fails_once", f"f{n}") for n in range(120)),
            *(calls.submit("submit", "always_fails", f"a{n}") for n in range(60)),
            *(cancelled_then_retried(n) for n in range(60)),
            *(cancelled_in_flight(n) for n in range(60)),
            # Each key twice, at once: one row, answered 201 and then 200.
            *(
                calls.submit("idempotent", "quick", f"k{n}", idempotency_key=f"key-{n}")
                for n in [*range(20), *range(20)]
            ),
            *(calls.call("signup", "POST", f"/signups/s{n}") for n in range(100)),
            *(calls.call("aborted signup", "POST", f"/signups/x{n}?abort=1") for n in range(20)),
            *(calls.submit("invalid", "no_such_task", f"u{n}") for n in range(15)),
            *(
                calls.call("invalid", "POST", "/jobs", json={"job_type": "quick", "payload": {}})
                for n in range(15)
            ),
            *(
                calls.call("list", "GET", "/jobs", params={"status": "completed"})
                for n in range(20)
            ),
        ]
        await asyncio.gather(*first_wave)

        look = Look(processes.database)
        try:

            def always_failing_failed() -> bool:
                return look.statuses("a") == Counter(failed=60)

            await until(always_failing_failed, what="a* to fail", processes=processes)
            failed = [row["id"] for token, row in look.jobs().items() if token.startswith("a")]
            some_completed = [
                row["id"] for token, row in look.jobs().items() if row["status"] == "completed"
            ][:20]
            # A second wave: retries of failed jobs, refused retries, and more submissions.
            second_wave = [
                *(calls.call("retry", "POST", f"/jobs/{job_id}/retry") for job_id in failed),
                *(
                    calls.call("refused retry", "POST", f"/jobs/{job_id}/retry")
                    for job_id in some_completed
                ),
                *(calls.submit("submit", "quick", f"p{n}") for n in range(100)),
            ]
            await asyncio.gather(*second_wave)
            requests_took = time.monotonic() - started
            await until(
                lambda: look.unfinished() == 0, what="every job to finish", processes=processes
            )
            finished_after = time.monotonic() - started
            jobs = look.jobs()
            signups = look.signups()
            integrity = look.integrity()
        finally:
            look.close()

    statuses = calls.statuses()
    print(
        f"\n{len(calls.made)} requests in {requests_took:.1f}s, {len(jobs)} jobs all final "
        f"after {finished_after:.1f}s; {dict(statuses)}"
    )
    assert not [made for made in calls.made if made[1] >= 500], statuses
    assert statuses == {
        "submit": Counter({201: 300 + 100 + 120 + 60 + 60 + 60 + 100}),
        "read": Counter({200: 100}),
        "cancel": Counter({200: 60}),
        "retry": Counter({200: 30 + 60}),
        "cancel in flight": statuses["cancel in flight"],
        "idempotent": Counter({201: 20, 200: 20}),
        "signup": Counter({201: 100}),
        "aborted signup": Counter({409: 20}),
        "invalid": Counter({422: 30}),
        "list": Counter({200: 20}),
        "refused retry": Counter({409: 20}),
    }
    # Cancelled before it ran (200), or too late (409: completed already).
    assert set(statuses["cancel in flight"]) <= {200, 409}
    assert processes.forbidden_lines() == []
    assert integrity == ["ok"]

    # Every job is in a final state; the counts match what was asked for.
    assert len(jobs) == 300 + 100 + 120 + 60 + 60 + 60 + 20 + 100 + 100
    assert {row["status"] for row in jobs.values()} <= FINAL

    def of(prefix: str) -> list[sqlite3.Row]:
        return [row for token, row in jobs.items() if token.startswith(prefix)]

    for prefix in ("q", "r", "k", "s", "p"):
        assert {row["status"] for row in of(prefix)} == {"completed"}, prefix
    assert {(row["status"], row["attempts"]) for row in of("f")} == {("completed", 2)}
    for row in of("a"):
        # Two attempts, retried, two more: every failed attempt kept.
        assert row["status"] == "failed"
        assert len(json.loads(row["errors"])) == 4
    for row in of("d"):
        retried = int(row["token"][1:]) % 2 == 0
        assert row["status"] == ("completed" if retried else "cancelled"), dict(row)
    cancels_ended = Counter(row["status"] for row in of("c"))
    print(f"jobs cancelled in flight ended: {dict(cancels_ended)}")
    assert set(cancels_ended) <= {"completed", "cancelled"}
    # The host's transactions: committed ones hold their row and their job, rolled back neither.
    assert signups == {f"s{n}" for n in range(100)}
    assert of("x") == []

    # Both processes ran jobs, and every completed job ran to its end exactly once.
    completed = {token for token, row in jobs.items() if row["status"] == "completed"}
    assert api.tokens()
    assert worker.tokens()
    recorded = ledger(api, worker)
    assert [token for token, times in recorded.items() if times > 1] == []
    assert set(recorded) == completed
    assert api.alive(), api.output()
    assert worker.alive(), worker.output()


async def test_killed_api_and_worker_leave_a_file_the_next_ones_recover(
    processes: Processes,
) -> None:
    intervals = {"EQUEUE_STALLED_AFTER": "2", "EQUEUE_HEARTBEAT_INTERVAL": "0.3"}
    port = free_port()
    # The API only enqueues: the held jobs are the doomed worker's alone.
    api = processes.api("api-1", port, EQUEUE_CONCURRENCY="0", **intervals)
    doomed = processes.worker("worker-1", EQUEUE_CONCURRENCY="16", **intervals)
    attempted: set[str] = set()
    acknowledged: set[str] = set()
    async with http_client(port) as http:
        await serving(http, api, processes)
        await until(doomed.running, what="the worker to run", processes=processes)
        calls = Calls(http)
        held = await asyncio.gather(
            *(calls.submit("submit", "hold_once", f"h{n}") for n in range(8))
        )
        assert {response.status_code for response in held} == {201}

        look = Look(processes.database)
        try:
            await until(
                lambda: look.processing_by(doomed) == 8,
                what="the held jobs to run in the doomed worker",
                processes=processes,
            )
        finally:
            # Closed before the kill: the next processes, not the test, find the log to recover.
            look.close()

        async def write(n: int) -> bool:
            token = f"w{n}"
            attempted.add(token)
            try:
                response = await calls.submit("submit", "quick", token)
            except httpx.TransportError:
                return False
            assert response.status_code == 201, response.text
            acknowledged.add(token)
            return True

        async def storm() -> None:
            # Batches of 20 at once, until the API stops answering.
            n = 0
            while all(await asyncio.gather(*(write(n + i) for i in range(20)))):
                n += 20

        writer = asyncio.create_task(storm())
        try:
            # Kill mid-write: the API is answering submissions and the worker completing them.
            await until(
                lambda: len(acknowledged) >= 300 and len(doomed.tokens()) >= 50,
                what="writes under way",
                processes=processes,
            )
            api.send(signal.SIGKILL)
            doomed.send(signal.SIGKILL)
            killed_at = time.monotonic()
            assert await api.exited(KILL_WAIT) == -signal.SIGKILL
            assert await doomed.exited(KILL_WAIT) == -signal.SIGKILL
            # The writes the API had not answered fail with the connection.
            await until(writer.done, what="the writes to fail", processes=processes)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
    unanswered = attempted - acknowledged
    wal = processes.database.with_name("equeue.db-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0

    # The next processes open the file first: SQLite rolls the log back to its last commit.
    port = free_port()
    api = processes.api("api-2", port, EQUEUE_CONCURRENCY="4", **intervals)
    rescuer = processes.worker("worker-2", EQUEUE_CONCURRENCY="8", **intervals)
    async with http_client(port) as http:
        await serving(http, api, processes)
        await until(rescuer.running, what="the new worker to run", processes=processes)
        serving_after = time.monotonic() - killed_at
        calls = Calls(http)
        look = Look(processes.database)
        try:
            await until(
                lambda: look.statuses("h") == Counter(completed=8),
                what="the held jobs to be rescued and completed",
                processes=processes,
            )
            rescued_after = time.monotonic() - killed_at
            after = await asyncio.gather(
                *(calls.submit("submit", "quick", f"n{n}") for n in range(200))
            )
            assert {response.status_code for response in after} == {201}
            await until(
                lambda: look.unfinished() == 0, what="every job to finish", processes=processes
            )
            jobs = look.jobs()
        finally:
            look.close()

    # The survivors stop cleanly; then the file, quiet, is whole.
    for survivor in (api, rescuer):
        survivor.send(signal.SIGTERM)
    # (uvicorn ends a graceful shutdown by raising the signal again: -SIGTERM is its clean exit.)
    assert await api.exited(DEADLINE) in (0, -signal.SIGTERM), api.output()
    assert "Application shutdown complete" in api.output(), api.output()
    assert await rescuer.exited(DEADLINE) == 0, rescuer.output()
    look = Look(processes.database)
    try:
        integrity = look.integrity()
    finally:
        look.close()

    print(
        f"\nkilled with {len(acknowledged)} submissions acknowledged, "
        f"{len(doomed.tokens())} jobs done by the doomed worker, {wal_bytes} bytes of WAL left; "
        f"new processes serving after {serving_after:.1f}s, held jobs rescued and completed "
        f"after {rescued_after:.1f}s; {len(jobs)} jobs in all"
    )
    assert integrity == ["ok"]
    assert processes.forbidden_lines() == []
    # Nothing is lost: every acknowledged job, and every job written at all, completed.
    assert acknowledged <= set(jobs)
    assert {f"n{n}" for n in range(200)} <= set(jobs)
    assert {row["status"] for row in jobs.values()} == {"completed"}
    # A submission the API died answering was stored whole, or not at all.
    assert (
        set(jobs) - acknowledged - {f"n{n}" for n in range(200)} - {f"h{n}" for n in range(8)}
        <= unanswered
    )
    for token in (f"h{n}" for n in range(8)):
        row = jobs[token]
        assert row["attempts"] == 2, dict(row)
        assert row["last_error"].startswith("WorkerLost"), dict(row)
    # The rescued jobs ran to their end in the new processes; every job finished at least once.
    survivors = ledger(api, rescuer)
    assert {f"h{n}" for n in range(8)} <= set(survivors)
    assert set(ledger(*processes.started)) == set(jobs)
