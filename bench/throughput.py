"""Throughput of fastapi_equeue on PostgreSQL and SQLite, measured the way the peers were
(shared/research/perf.md): enqueue one job per call, bulk enqueue 1,000 per call, and the
processing rate of one standalone worker process on a backlog of no-op async jobs.

Run it as ``/work/.venv/bin/python bench/throughput.py [--rounds 3] [--backends postgres,sqlite]``.
PostgreSQL: ``--database-url`` is an admin database on a loopback server; the run creates a fresh
database ``equeue_bench_<random>`` there and drops it at the end. SQLite: a temporary file per
measurement. Rounds are interleaved (every backend once per round); the table shows medians.

- enqueue: N sequential ``await client.enqueue(...)`` after one warm-up call;
- bulk: ``client.enqueue_many`` with 1,000 jobs per call, ``--bulk-calls`` calls;
- process: ``--jobs`` jobs are queued with ``enqueue_many`` (then ``VACUUM ANALYZE`` on
  PostgreSQL), then ONE worker is spawned as ``python -m fastapi_equeue.worker throughput:queue``.
  t0 is taken in the worker when the CLI looks the queue up, just before it connects and starts
  (interpreter start-up excluded, the library's start-up included).
  *db* = jobs / (time until no job is queued, retrying or processing; polled every 20 ms);
  *exec* = jobs / (time the last task body ran). Worker CPU is user + sys of the worker
  (``RUSAGE_CHILDREN``), peak RSS its ``VmHWM`` read just before it is stopped.

This file is also the worker's module: ``throughput:queue`` builds the queue from the
``BENCH_WORKER_*`` variables on first access, so importing it does nothing else.
"""

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastapi_equeue import EQueue

DEFAULT_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BULK_SIZE = 1000
POLL = 0.02
STOP_WAIT = 30.0

UNFINISHED = text(
    "SELECT count(*) FROM equeue_jobs WHERE status IN ('queued', 'retrying', 'processing')"
)
COMPLETED = text("SELECT count(*) FROM equeue_jobs WHERE status = 'completed'")


# -- the worker side ---------------------------------------------------------------------------


def stamp(path: str) -> None:
    """Write the time now to ``path`` (once per run: a tiny write, after the timed work)."""
    Path(path).write_text(repr(time.time()), encoding="utf-8")


def build_queue(database_url: str, **options: Any) -> EQueue:
    """The benchmark's queue: one no-op async task, ``noop(i, t)``."""
    queue = EQueue(database_url, **options)
    done = 0
    target = int(os.environ.get("BENCH_WORKER_JOBS", "0"))
    exec_file = os.environ.get("BENCH_WORKER_EXEC_FILE")

    @queue.task
    async def noop(i: int, t: float) -> None:
        nonlocal done
        done += 1
        if done == target and exec_file:
            stamp(exec_file)

    return queue


def __getattr__(name: str) -> EQueue:
    # PEP 562: the worker CLI looks up ``throughput:queue`` right before it starts the queue.
    if name != "queue":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    queue = build_queue(os.environ["BENCH_WORKER_URL"])
    stamp(os.environ["BENCH_WORKER_T0_FILE"])
    globals()["queue"] = queue
    return queue


# -- the measurements --------------------------------------------------------------------------


@dataclass
class Figures:
    """One backend's results, one value per round."""

    enqueue: list[float] = field(default_factory=list)
    bulk: list[float] = field(default_factory=list)
    db: list[float] = field(default_factory=list)
    exec: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


def payload(i: int) -> dict[str, Any]:
    return {"i": i, "t": time.time()}


async def measure_enqueue(url: str, n: int) -> float:
    async with build_queue(url, concurrency=0) as queue:
        await queue.client.enqueue("noop", payload(-1))  # warm-up
        t0 = time.perf_counter()
        for i in range(n):
            await queue.client.enqueue("noop", payload(i))
        return n / (time.perf_counter() - t0)


async def measure_bulk(url: str, calls: int) -> float:
    async with build_queue(url, concurrency=0) as queue:
        await queue.client.enqueue_many([{"job_type": "noop", "payload": payload(-1)}])
        batches = [
            [{"job_type": "noop", "payload": payload(c * BULK_SIZE + i)} for i in range(BULK_SIZE)]
            for c in range(calls)
        ]
        t0 = time.perf_counter()
        for batch in batches:
            await queue.client.enqueue_many(batch)
        return calls * BULK_SIZE / (time.perf_counter() - t0)


async def prequeue(url: str, jobs: int) -> None:
    async with build_queue(url, concurrency=0) as queue:
        for start in range(0, jobs, BULK_SIZE):
            await queue.client.enqueue_many(
                [
                    {"job_type": "noop", "payload": payload(i)}
                    for i in range(start, min(start + BULK_SIZE, jobs))
                ]
            )


async def wait_all_done(
    engine: AsyncEngine, process: subprocess.Popen[bytes], timeout: float
) -> float:
    """Poll every 20 ms until no job is unfinished; the time.time() when that was seen."""
    deadline = time.monotonic() + timeout
    async with engine.connect() as conn:
        while time.monotonic() < deadline:
            if (await conn.execute(UNFINISHED)).scalar_one() == 0:
                return time.time()
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited early with {process.returncode}")
            await asyncio.sleep(POLL)
    raise TimeoutError(f"jobs were still unfinished after {timeout}s")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def spawn_worker(url: str, jobs: int, concurrency: int, work: Path) -> subprocess.Popen[bytes]:
    """Start ONE standalone worker on ``url``; it writes ``work/t0``, ``work/exec`` and its log."""
    t0_file, exec_file = work / "t0", work / "exec"
    for stale in (t0_file, exec_file):
        stale.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent),
        "BENCH_WORKER_URL": url,
        "BENCH_WORKER_JOBS": str(jobs),
        "BENCH_WORKER_T0_FILE": str(t0_file),
        "BENCH_WORKER_EXEC_FILE": str(exec_file),
    }
    command = [
        sys.executable, "-m", "fastapi_equeue.worker", "throughput:queue",
        "--concurrency", str(concurrency), "--log-level", "WARNING",
    ]  # fmt: skip
    with (work / "worker.log").open("wb") as out:
        return subprocess.Popen(
            command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


def stop_worker(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM the worker and reap it; its CPU seconds (user + sys)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_WAIT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


async def measure_processing(
    url: str, jobs: int, concurrency: int, timeout: float, figures: Figures, work: Path
) -> None:
    await prequeue(url, jobs)
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            if url.startswith("postgresql"):
                await conn.execute(text("VACUUM ANALYZE equeue_jobs"))
            assert (await conn.execute(UNFINISHED)).scalar_one() == jobs
        process = spawn_worker(url, jobs, concurrency, work)
        try:
            end = await wait_all_done(engine, process, timeout)
            rss = peak_rss_mib(process.pid)
        except BaseException:
            process.kill()
            process.wait(STOP_WAIT)
            sys.stderr.write(read(work / "worker.log")[-4000:])
            raise
        cpu = stop_worker(process)
        async with engine.connect() as conn:
            completed = (await conn.execute(COMPLETED)).scalar_one()
        if completed != jobs:
            raise RuntimeError(f"{completed} of {jobs} jobs completed")
        t0 = float(read(work / "t0"))
        figures.db.append(jobs / (end - t0))
        figures.exec.append(jobs / (float(read(work / "exec")) - t0))
        figures.cpu.append(cpu)
        figures.rss.append(rss)
    finally:
        await engine.dispose()


# -- databases ---------------------------------------------------------------------------------


class Postgres:
    """A fresh database on the admin URL's server, emptied before each measurement."""

    name = "postgres"

    def __init__(self, admin_url: str) -> None:
        self._admin = admin_url
        database = f"equeue_bench_{uuid.uuid4().hex[:12]}"
        self._database = database
        self.url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)

    async def _admin_execute(self, statement: str) -> None:
        engine = create_async_engine(self._admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    async def create(self) -> None:
        await self._admin_execute(f'CREATE DATABASE "{self._database}"')

    async def drop(self) -> None:
        await self._admin_execute(f'DROP DATABASE IF EXISTS "{self._database}" WITH (FORCE)')

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        await EQueue(self.url, concurrency=0).migrate()
        engine = create_async_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("TRUNCATE equeue_jobs, equeue_workers"))
                await conn.execute(text("CHECKPOINT"))
        finally:
            await engine.dispose()
        yield self.url


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class SQLite:
    """A new database file per measurement."""

    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._count = 0

    async def create(self) -> None:
        return

    async def drop(self) -> None:
        return

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        self._count += 1
        path = self._directory / f"bench-{self._count}.db"
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            remove_sqlite(path)


async def run_round(
    database: Postgres | SQLite, args: argparse.Namespace, figures: Figures, work: Path
) -> None:
    async with database.fresh() as url:
        figures.enqueue.append(await measure_enqueue(url, args.single))
    async with database.fresh() as url:
        figures.bulk.append(await measure_bulk(url, args.bulk_calls))
    async with database.fresh() as url:
        await measure_processing(url, args.jobs, args.concurrency, args.timeout, figures, work)


# -- reporting ---------------------------------------------------------------------------------


def summary(values: list[float], digits: int = 0) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def report(results: dict[str, Figures], args: argparse.Namespace) -> None:
    columns: list[tuple[str, Callable[[Figures], str]]] = [
        (f"enqueue 1/call (N={args.single:,})", lambda f: summary(f.enqueue)),
        (f"bulk {BULK_SIZE:,}/call", lambda f: summary(f.bulk)),
        (f"process db (N={args.jobs:,}, c={args.concurrency})", lambda f: summary(f.db)),
        ("process exec", lambda f: summary(f.exec)),
        ("worker CPU s", lambda f: summary(f.cpu, 1)),
        ("peak RSS MiB", lambda f: summary(f.rss, 1)),
    ]
    header = ["backend", *(name for name, _ in columns)]
    rows = [
        [backend, *(cell(figures) for _, cell in columns)] for backend, figures in results.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"\njobs/s, median of {args.rounds} rounds [min-max]")
    for row in [header, ["-" * w for w in widths], *rows]:
        print(
            " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL admin database URL"
    )
    p.add_argument("--backends", default="postgres,sqlite", help="comma-separated: postgres,sqlite")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--single", type=int, default=2000, help="jobs enqueued one per call")
    p.add_argument("--bulk-calls", type=int, default=10, help=f"calls of {BULK_SIZE} jobs each")
    p.add_argument("--jobs", type=int, default=10_000, help="jobs pre-queued for the worker")
    p.add_argument("--concurrency", type=int, default=10, help="the worker's --concurrency")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds allowed per processing run"
    )
    args = p.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(args.backends) - {"postgres", "sqlite"}:
        p.error(f"unknown backends {sorted(unknown)}")
    host = make_url(args.database_url).host
    if "postgres" in args.backends and host not in LOOPBACK:
        p.error(f"the benchmark only talks to a loopback server, not {host!r}")
    if min(args.rounds, args.single, args.bulk_calls, args.jobs, args.concurrency) < 1:
        p.error("--rounds, --single, --bulk-calls, --jobs and --concurrency must be at least 1")
    return args


async def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="equeue-bench-") as tmp:
        work = Path(tmp)
        databases: list[Postgres | SQLite] = []
        if "postgres" in args.backends:
            databases.append(Postgres(args.database_url))
        if "sqlite" in args.backends:
            databases.append(SQLite(work))
        results = {database.name: Figures() for database in databases}
        created: list[Postgres | SQLite] = []
        try:
            for database in databases:
                await database.create()
                created.append(database)
            for round_number in range(1, args.rounds + 1):
                # Interleaved, and the order rotates every round, as the peers were measured.
                order = databases[round_number - 1 :] + databases[: round_number - 1]
                for database in order:
                    figures = results[database.name]
                    await run_round(database, args, figures, work)
                    print(
                        f"round {round_number} {database.name}: "
                        f"enqueue {figures.enqueue[-1]:,.0f}/s, "
                        f"bulk {figures.bulk[-1]:,.0f}/s, process db {figures.db[-1]:,.0f}/s "
                        f"exec {figures.exec[-1]:,.0f}/s, worker CPU {figures.cpu[-1]:.1f}s, "
                        f"RSS {figures.rss[-1]:.1f} MiB",
                        flush=True,
                    )
        finally:
            for database in created:
                await database.drop()
    report(results, args)


if __name__ == "__main__":
    asyncio.run(main())
