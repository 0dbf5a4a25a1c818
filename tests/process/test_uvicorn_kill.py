"""uvicorn with two worker processes, each running in-process equeue workers through
``FastAPI(lifespan=queue.lifespan)``: one child is killed outright while it runs jobs.

uvicorn (0.30 and later) starts a new child in its place, which registers as a new worker; the
jobs the dead child held are taken back once it has been silent for ``stalled_after`` and run
again; no other job runs twice. Every wait polls the database against a deadline.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import pg_dsn
from tests.faults.harness import free_port
from tests.process.conftest import Worker, Workers
from tests.process.conftest import until as until_held

pytestmark = pytest.mark.process

JOBS = 40
JOB_SECONDS = 3.0
# Each child takes 20 jobs at once, so the 40 jobs keep both children busy together.
CONCURRENCY = 20
HEARTBEAT = 0.3
STALLED_AFTER = 2.0
# Beyond stalled_after and one run of the rescued jobs: a bound for a loaded machine.
RECOVERY_SLACK = 8.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass
class Uvicorn:
    """``uvicorn web_app:app --workers 2`` in its own session (so teardown reaches every child)."""

    started: Worker
    port: int

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.started.process

    @property
    def pid(self) -> int:
        return self.started.pid

    def children(self) -> set[int]:
        """The pids of the uvicorn parent's live children."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        if not path.exists():
            return set()
        return {int(pid) for pid in path.read_text().split()}

    def output(self) -> str:
        return self.started.output(limit=8000)

    def ledger_tokens(self) -> list[tuple[str, int]]:
        if not self.started.ledger.exists():
            return []
        lines = self.started.ledger.read_text(encoding="utf-8").splitlines()
        return [(token, int(pid)) for token, pid in (line.split() for line in lines)]


@pytest.fixture
def uvicorn(process_url: str, tmp_path: Path) -> Iterator[Uvicorn]:
    port = free_port()
    env = {
        "EQUEUE_URL": process_url,
        "EQUEUE_CONCURRENCY": str(CONCURRENCY),
        "EQUEUE_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "EQUEUE_STALLED_AFTER": str(STALLED_AFTER),
        "EQUEUE_POLL_INTERVAL": "0.2",
    }
    command = [
        "-m", "uvicorn", "web_app:app", "--workers", "2",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    pool = Workers(process_url, tmp_path)
    server = Uvicorn(pool.spawn("uvicorn", command, env=env, session=True), port)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(STOP_TIMEOUT)
        # Whatever of its session is left (a child that outlived its parent) is killed.
        pool.stop_all()


async def until(
    condition: Callable[[], Awaitable[bool]], *, what: str, timeout: float, server: Uvicorn
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` or if uvicorn exits."""
    watch = [server.started]
    await until_held(condition, what=what, timeout=timeout, watch=watch, report=server.output)


@pytest.mark.postgres_only
async def test_uvicorn_respawns_a_killed_child_whose_jobs_run_again(
    uvicorn: Uvicorn, process_url: str
) -> None:
    conn = await asyncpg.connect(pg_dsn(process_url), timeout=5)
    try:
        await run_scenario(uvicorn, conn)
    finally:
        await conn.close()


async def run_scenario(server: Uvicorn, conn: asyncpg.Connection) -> None:
    async def registered() -> dict[int, str]:
        """The uvicorn children registered as workers: pid to worker id."""
        rows = await conn.fetch("SELECT id::text AS id, pid FROM equeue_workers")
        children = server.children()
        return {row["pid"]: row["id"] for row in rows if row["pid"] in children}

    async def both_registered() -> bool:
        return len(await registered()) == 2

    await until(
        both_registered, what="both children to register", timeout=START_TIMEOUT, server=server
    )

    # A child registers in its app's lifespan, and only then starts listening: until one does,
    # a connection is refused.
    async def answering() -> bool:
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as probe:
                return (await probe.get("/jobs/queues")).status_code == 200
        except httpx.TransportError:
            return False

    base = f"http://127.0.0.1:{server.port}"
    await until(answering, what="the server to answer", timeout=START_TIMEOUT, server=server)

    # Enqueue through the REST API of the running server (either child answers).
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        ids = {}
        for n in range(JOBS):
            token = f"job-{n:02d}"
            response = await http.post(
                "/jobs",
                json={
                    "job_type": "sleep_then_record",
                    "payload": {"token": token, "seconds": JOB_SECONDS},
                },
            )
            assert response.status_code == 201, response.text
            ids[response.json()["id"]] = token

    async def busy() -> dict[int, set[str]]:
        """Each child's processing jobs (as tokens), for the children running any."""
        rows = await conn.fetch(
            """
            SELECT w.pid, j.payload ->> 'token' AS token
            FROM equeue_jobs AS j JOIN equeue_workers AS w ON w.id = j.worker_id
            WHERE j.status = 'processing'
            """
        )
        children = server.children()
        held: dict[int, set[str]] = {}
        for row in rows:
            if row["pid"] in children:
                held.setdefault(row["pid"], set()).add(row["token"])
        return held

    async def both_busy() -> bool:
        return len(await busy()) == 2

    await until(both_busy, what="both children to run jobs", timeout=START_TIMEOUT, server=server)
    before = await registered()
    held = await busy()
    victim = max(held, key=lambda pid: len(held[pid]))
    survivor = next(pid for pid in before if pid != victim)
    victim_id = before[victim]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    victim_jobs = held[victim]
    assert victim_jobs

    # uvicorn replaces the child; the new one registers under a new worker id.
    async def respawned() -> bool:
        now = await registered()
        return any(pid not in before for pid in now)

    await until(
        respawned, what="uvicorn to respawn the killed child", timeout=START_TIMEOUT, server=server
    )
    now = await registered()
    new_pid = next(pid for pid in now if pid not in before)
    assert now[new_pid] not in set(before.values()), (now, before)
    assert victim not in server.children()

    async def all_completed() -> bool:
        done = await conn.fetchval("SELECT count(*) FROM equeue_jobs WHERE status = 'completed'")
        return bool(done == JOBS)

    bound = STALLED_AFTER + JOB_SECONDS + RECOVERY_SLACK
    await until(all_completed, what=f"{JOBS} jobs to complete", timeout=bound, server=server)
    recovered_in = time.monotonic() - killed_at

    async def dead_worker_forgotten() -> bool:
        return not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM equeue_workers WHERE id = $1::uuid)", victim_id
        )

    await until(
        dead_worker_forgotten,
        what="the dead worker's row to go",
        timeout=START_TIMEOUT,
        server=server,
    )

    rows = await conn.fetch(
        """
        SELECT payload ->> 'token' AS token, status, attempts, result,
               (SELECT array_agg(e ->> 'worker_id') FROM jsonb_array_elements(errors) AS e
                WHERE e ->> 'error' LIKE 'WorkerLost%') AS lost_from
        FROM equeue_jobs
        """
    )
    ledger = server.ledger_tokens()
    runs = Counter(token for token, _ in ledger)
    rescued = {row["token"] for row in rows if row["lost_from"]}
    print(
        f"\nuvicorn {server.pid}: children {sorted(before)}, killed {victim} "
        f"(worker {victim_id}, {len(victim_jobs)} jobs), respawned as {new_pid} "
        f"(worker {now[new_pid]}); all {JOBS} completed {recovered_in:.1f}s after the kill; "
        f"rescued {len(rescued)}; ran twice {sorted(t for t, n in runs.items() if n > 1)}; "
        f"rescued jobs ran by {dict(Counter(p for t, p in ledger if t in rescued))}"
    )

    assert len(rows) == JOBS
    assert {row["status"] for row in rows} == {"completed"}
    # Only the dead child's jobs were taken back, each once, from it alone.
    assert rescued == victim_jobs, (rescued ^ victim_jobs, rows)
    for row in rows:
        if row["token"] in victim_jobs:
            assert row["lost_from"] == [victim_id], row
            assert row["attempts"] == 2, row
        else:
            assert row["attempts"] == 1, row
    # Every job ran; only the dead child's ran twice (it may have recorded one just before dying).
    assert set(runs) == set(ids.values())
    assert max(runs.values()) <= 2, runs
    assert {token for token, n in runs.items() if n == 2} <= victim_jobs, runs
    # The dead child's jobs were finished by the survivors.
    assert all(
        int(row["result"]) in {survivor, new_pid} for row in rows if row["token"] in victim_jobs
    )
    assert server.process.poll() is None, server.output()
