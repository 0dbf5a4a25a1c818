"""Chaos on PostgreSQL: three standalone workers run 6,000 short jobs while, for two minutes, a
random fault strikes every 2-5 s: a worker killed outright (and replaced), a worker stopped for
4-8 s (SIGSTOP, then SIGCONT), or every session on the database terminated.

Jobs are enqueued over the first 100 s of the faults, so the faults land on claims, runs and
completions alike. Afterwards every job must be completed, none lost, and every extra execution
of a job accounted for by a fault, precisely:

- a job runs more than once only when the rescuer took an attempt back from the worker that ran
  it (its row names the lost worker: a ``WorkerLost`` entry in ``errors``), so for every process,
  its executions of a job are at most the rescues of its attempts of that job, plus one if it is
  the process that completed the job (the job's result is that process's pid);
- a rescue takes an attempt back from a worker silent for ``stalled_after``, so every rescue
  that let a job run twice must follow a fault on that worker's process: a SIGKILL at least
  ``stalled_after`` (less one heartbeat) before it; a SIGSTOP, the rescue falling inside the stop
  (from ``stalled_after`` after its start to shortly after the SIGCONT); or its sessions
  terminated, the rescue falling between ``stalled_after`` and ``stalled_after`` plus a
  reconnection bound after it.

The figures (faults by kind, jobs, executions, duplicates, rescues, the drain after the last
fault) are printed, and written as JSON to ``EQUEUE_CHAOS_REPORT`` when that is set. The seed is
``EQUEUE_CHAOS_SEED`` when set, otherwise random; it is printed either way.

The only sleeps are the chaos itself (the random gaps between faults, the length of a stop) and
the pacing of the enqueues; every other wait polls against a deadline.
"""

import asyncio
import json
import os
import random
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fastapi_equeue import QueueClient
from tests.conftest import pg_dsn
from tests.process.conftest import Database, Worker, Workers

pytestmark = [pytest.mark.process, pytest.mark.slow]

JOBS = 6_000
WORKERS = 3
CHAOS_SECONDS = 120.0
ENQUEUE_SECONDS = 100.0
ENQUEUE_BATCH = 50
FAULT_GAP = (2.0, 5.0)
STOP_FOR = (4.0, 8.0)
TASK_SECONDS = (0.002, 0.008)
# Far more attempts than the faults can take from one job: every job must end completed.
MAX_ATTEMPTS = 50

HEARTBEAT = 0.3
STALLED_AFTER = 2.0
WORKER_ENV = {
    "EQUEUE_HEARTBEAT_INTERVAL": str(HEARTBEAT),
    "EQUEUE_STALLED_AFTER": str(STALLED_AFTER),
    "EQUEUE_POLL_INTERVAL": "0.2",
    "EQUEUE_SHUTDOWN_GRACE": "2.0",
}

# Tolerance on the windows that tie a rescue to a fault: scheduling on a loaded machine, the
# +/- 10 % jitter of the heartbeat, a statement's own duration.
SLACK = 1.0
# How long a worker whose sessions were terminated may take to beat again (the jobs it holds
# meanwhile may be rescued). Far above what a reconnection takes; it bounds, it measures nothing.
RECONNECT_BOUND = 10.0
DRAIN_TIMEOUT = 240.0
ENQUEUE_RETRY_FOR = 30.0
EXIT_DEADLINE = 30.0
POLL = 0.2

RUNNING = re.compile(r"worker running ([0-9a-f-]{36})")


@dataclass
class Fault:
    """One fault on one worker process (a ``terminate`` is one per process it hit)."""

    kind: str
    pid: int
    at: float
    until: float | None = None  # the SIGCONT of a stop


@dataclass
class Execution:
    token: str
    pid: int
    start: float
    end: float


@dataclass
class Chaos:
    """What the run did, for the checks and the report."""

    seed: int
    faults: list[Fault] = field(default_factory=list)
    terminated_sessions: int = 0
    enqueue_errors: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)
    killed: set[int] = field(default_factory=set)
    last_fault_end: float = 0.0


def serves(worker: Worker) -> bool:
    """Whether the worker has logged that it runs, with its id."""
    return RUNNING.search(worker.text()) is not None


def worker_ids(workers: Workers) -> dict[str, int]:
    """Each worker id to the pid of the process that ran it, from the workers' logs."""
    ids = {}
    for worker in workers.started:
        for worker_id in RUNNING.findall(worker.text()):
            ids[worker_id] = worker.pid
    return ids


def read_executions(path: Path) -> list[Execution]:
    """Every ``timed`` body that finished: ``token pid start end`` per line."""
    if not path.exists():
        return []
    executions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        token, pid, start, end = line.split()
        executions.append(Execution(token, int(pid), float(start), float(end)))
    return executions


def explains(fault: Fault, rescued_at: float) -> bool:
    """Whether ``fault`` (on the rescued worker's process) accounts for a rescue at
    ``rescued_at``: the worker must have been silent for ``stalled_after`` because of it."""
    earliest = fault.at + STALLED_AFTER - HEARTBEAT - SLACK
    if rescued_at < earliest:
        return False
    if fault.kind == "kill":
        return True
    if fault.kind == "stop":
        assert fault.until is not None
        return rescued_at <= fault.until + HEARTBEAT + SLACK
    return rescued_at <= fault.at + STALLED_AFTER + RECONNECT_BOUND


@pytest.fixture
async def monitor(process_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's own connection: the one session that terminating every other one spares (the
    ``db`` fixture's is not, so it serves only before the chaos)."""
    conn = await asyncpg.connect(pg_dsn(process_url), timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


async def test_jobs_survive_kills_stops_and_terminated_sessions(
    client: QueueClient, workers: Workers, db: Database, monitor: asyncpg.Connection
) -> None:
    seed = int(os.environ.get("EQUEUE_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed: {seed} (set EQUEUE_CHAOS_SEED={seed} to replay the same choices)")
    rng = random.Random(seed)
    chaos = Chaos(seed)
    serial = iter(range(1, 1_000))
    pool: list[Worker] = []

    def start_worker() -> Worker:
        worker = workers.start(f"w{next(serial)}", **WORKER_ENV)
        pool.append(worker)
        return worker

    def check_exits() -> None:
        """A worker that exits without being killed is a failure; replace it to carry on."""
        for worker in list(pool):
            if worker.alive() or worker.pid in chaos.killed:
                continue
            pool.remove(worker)
            chaos.unexpected_exits.append(
                f"{worker.name} (pid {worker.pid}) exited with {worker.process.returncode} "
                f"at {time.time():.3f}\n{worker.output(3000)}"
            )
            start_worker()

    for _ in range(WORKERS):
        start_worker()
    await db.ready(*pool)

    tokens = [f"t{n:05d}" for n in range(JOBS)]
    durations = [rng.uniform(*TASK_SECONDS) for _ in tokens]

    async def enqueue_all() -> None:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        batches = range(0, JOBS, ENQUEUE_BATCH)
        step = ENQUEUE_SECONDS / len(batches)
        for index, first in enumerate(batches):
            # Pacing: the jobs arrive while the faults strike, not all up front.
            await asyncio.sleep(max(0.0, begin + index * step - loop.time()))
            items = [
                {
                    "job_type": "timed",
                    "payload": {"token": tokens[n], "seconds": durations[n]},
                    "max_attempts": MAX_ATTEMPTS,
                    # A retry after a lost connection (the commit may have landed) adds no row.
                    "idempotency_key": tokens[n],
                }
                for n in range(first, min(first + ENQUEUE_BATCH, JOBS))
            ]
            deadline = loop.time() + ENQUEUE_RETRY_FOR
            while True:
                try:
                    await client.enqueue_many(items)
                    break
                except Exception as exc:
                    chaos.enqueue_errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    if loop.time() > deadline:
                        raise
                await asyncio.sleep(0.1)

    async def stop_for(worker: Worker, seconds: float) -> None:
        fault = Fault("stop", worker.pid, time.time())
        worker.send(signal.SIGSTOP)
        chaos.stopped.add(worker.pid)
        chaos.faults.append(fault)
        try:
            await asyncio.sleep(seconds)
        finally:
            worker.send(signal.SIGCONT)
            fault.until = time.time()
            chaos.stopped.discard(worker.pid)
            chaos.last_fault_end = max(chaos.last_fault_end, fault.until)

    async def kill(worker: Worker) -> None:
        chaos.killed.add(worker.pid)
        worker.send(signal.SIGKILL)
        at = time.time()
        chaos.faults.append(Fault("kill", worker.pid, at))
        chaos.last_fault_end = max(chaos.last_fault_end, at)
        await worker.exited(EXIT_DEADLINE)
        pool.remove(worker)
        start_worker()

    async def terminate() -> None:
        at = time.time()
        count = await monitor.fetchval(
            """
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
            FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
            """
        )
        chaos.terminated_sessions += count
        chaos.faults.extend(Fault("terminate", worker.pid, at) for worker in pool)
        chaos.last_fault_end = max(chaos.last_fault_end, at)

    async def inject() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + CHAOS_SECONDS
        stops: list[asyncio.Task[None]] = []
        while (gap := rng.uniform(*FAULT_GAP)) < end - loop.time():
            await asyncio.sleep(gap)  # the chaos's own rhythm
            check_exits()
            kind = rng.choice(("kill", "stop", "terminate"))
            # Only a worker that serves is a target (its id is in its log), never a stopped one;
            # and one worker at least keeps running.
            targets = [w for w in pool if w.pid not in chaos.stopped and serves(w)]
            if kind == "stop" and len(targets) >= 2:
                stops.append(
                    asyncio.create_task(stop_for(rng.choice(targets), rng.uniform(*STOP_FOR)))
                )
            elif kind == "kill" and targets:
                await kill(rng.choice(targets))
            else:
                await terminate()
        await asyncio.gather(*stops)

    enqueuing = asyncio.create_task(enqueue_all())
    try:
        await inject()
        await enqueuing
    finally:
        enqueuing.cancel()

    async def drained() -> bool:
        check_exits()
        done = await monitor.fetchval("SELECT count(*) FROM equeue_jobs WHERE status = 'completed'")
        return bool(done == JOBS)

    try:
        await workers.until(
            drained, what=f"{JOBS} jobs to complete", timeout=DRAIN_TIMEOUT, alive=()
        )
    except AssertionError as exc:
        counts = await monitor.fetch("SELECT status, count(*) FROM equeue_jobs GROUP BY status")
        raise AssertionError(f"{exc}\njobs: {[tuple(row) for row in counts]}") from None
    drain_seconds = time.time() - chaos.last_fault_end

    # Stop every worker gracefully, so the ledger is final before it is read; a replacement
    # started late is first let up (before its signal handlers exist, SIGTERM simply kills it).
    async def all_serve() -> bool:
        return all(serves(worker) for worker in pool)

    await workers.until(all_serve, what="the last workers to start", alive=pool)
    for worker in pool:
        worker.send(signal.SIGTERM)
    exit_codes = {worker.name: await worker.exited(EXIT_DEADLINE) for worker in pool}

    rows = await monitor.fetch(
        "SELECT payload ->> 'token' AS token, status, result, attempts, errors FROM equeue_jobs"
    )
    jobs = {row["token"]: row for row in rows}
    ids = worker_ids(workers)
    executions = read_executions(workers.executions)
    by_token: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_token[execution.token].append(execution)
    faults_by_pid: dict[int, list[Fault]] = defaultdict(list)
    for fault in chaos.faults:
        faults_by_pid[fault.pid].append(fault)

    problems: list[str] = []
    rescues = 0
    unexplained_rescues: list[str] = []
    duplicates: dict[str, Any] = {}
    for token in tokens:
        row = jobs.get(token)
        runs = by_token.get(token, [])
        if row is None:
            problems.append(f"{token}: no row")
            continue
        if row["status"] != "completed":
            problems.append(f"{token}: {row['status']}")
        completer = json.loads(row["result"]) if row["result"] is not None else None
        ran_by = Counter(run.pid for run in runs)
        if completer not in ran_by:
            problems.append(f"{token}: completed by pid {completer}, which has no execution of it")
        lost: Counter[int] = Counter()
        lost_entries = []
        for entry in json.loads(row["errors"]):
            if not str(entry.get("error", "")).startswith("WorkerLost"):
                continue
            rescues += 1
            pid = ids.get(str(entry.get("worker_id")))
            rescued_at = _epoch(entry["at"])
            lost_entries.append((pid, rescued_at))
            if pid is None:
                unexplained_rescues.append(f"{token}: rescued from unknown worker {entry}")
                continue
            if any(explains(fault, rescued_at) for fault in faults_by_pid[pid]):
                lost[pid] += 1
            else:
                unexplained_rescues.append(
                    f"{token}: rescued at {rescued_at:.3f} from pid {pid}, whose faults are "
                    f"{[asdict(f) for f in faults_by_pid[pid]]}"
                )
        if len(runs) > 1:
            duplicates[token] = {
                "runs": [asdict(run) for run in runs],
                "completed_by": completer,
                "rescued_from": lost_entries,
            }
        for pid, count in ran_by.items():
            allowed = lost[pid] + (pid == completer)
            if count > allowed:
                problems.append(
                    f"{token}: pid {pid} ran it {count} times, but only {lost[pid]} of its "
                    f"attempts were rescued after a fault on it (completed by {completer}); "
                    f"runs {runs}, rescues {lost_entries}, faults on it "
                    f"{[asdict(f) for f in faults_by_pid[pid]]}"
                )
    extra_rows = set(jobs) - set(tokens)

    kinds = Counter(fault.kind for fault in chaos.faults if fault.kind != "terminate")
    kinds["terminate"] = len({fault.at for fault in chaos.faults if fault.kind == "terminate"})
    report = {
        "seed": seed,
        "jobs": JOBS,
        "workers_started": len(workers.started),
        "faults": dict(kinds),
        "sessions_terminated": chaos.terminated_sessions,
        "executions": len(executions),
        "duplicated_jobs": len(duplicates),
        "extra_executions": len(executions) - len(by_token),
        "rescued_attempts": rescues,
        "unexplained_rescues": len(unexplained_rescues),
        "enqueue_retries": len(chaos.enqueue_errors),
        "drain_seconds_after_last_fault": round(drain_seconds, 2),
        "unexpected_exits": len(chaos.unexpected_exits),
        "exit_codes_at_sigterm": exit_codes,
        "statuses": dict(Counter(row["status"] for row in rows)),
        "problems": problems[:50],
        "duplicates": duplicates,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "duplicates"}, indent=2))
    for token, detail in list(duplicates.items())[:20]:
        print(f"duplicate {token}: {detail}")
    for line in unexplained_rescues[:20]:
        print(f"unexplained rescue (no duplicate needed): {line}")
    for line in chaos.enqueue_errors[:5]:
        print(f"enqueue retried after: {line}")
    if path := os.environ.get("EQUEUE_CHAOS_REPORT"):
        write_report(Path(path), report)

    assert not chaos.unexpected_exits, "\n".join(chaos.unexpected_exits)
    assert not extra_rows, sorted(extra_rows)[:20]
    assert not problems, "\n".join(problems[:50])
    assert set(by_token) == set(tokens)
    assert all(code == 0 for code in exit_codes.values()), (exit_codes, workers.output())


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def _epoch(value: str) -> float:
    """A timestamp from a job's ``errors`` (ISO 8601, with an offset) as epoch seconds."""
    return datetime.fromisoformat(value).timestamp()
