"""The benchmark suite: fastapi_equeue against procrastinate, PgQueuer, oban and chancy.

Run it with ``nox -s bench`` (options after ``--``, e.g. ``nox -s bench -- --quick``). This
driver runs on the nox session's interpreter; every library runs in its own virtualenv under
``bench/.venvs/<lib>`` (created here when missing; oban's needs Python 3.12), through an adapter
(``bench/adapters/<lib>_adapter.py``), one subprocess per measurement. The method: a fresh
database per measurement, the payload ``{"i", "t"}``, no-op async tasks, t0 in the worker just
before the library's start call, medians over rounds with the libraries interleaved (their order
rotates every round). Only 127.0.0.1 is ever contacted.

Scenarios (``--scenarios``):
  enqueue     N single enqueues from one coroutine (after one warm-up)
  bulk        the bulk API, 1,000 jobs per call
  process     N pre-queued jobs, one worker process, default / c10 / c50 configs;
              db = N / time until the database shows every job finished (polled every 20 ms),
              exec = N / time the N-th task body ran; worker CPU (wait4), PostgreSQL CPU,
              peak RSS under load (VmHWM)
  latency     an idle worker, one warm-up job, then 200 enqueues 20 ms apart: enqueue-to-start
              p50/p95/p99; the worker's peak RSS when idle
  claim       the library's claim of one job, timed per call, on a table with no history
  big         the same claim, and processing at the default config, on a table that already
              holds --big-rows finished jobs (built once per library, copied per round)
  sqlite      fastapi_equeue only: enqueue, bulk, processing on SQLite
  twoworkers  fastapi_equeue only: processing with two worker processes on PostgreSQL
  limited     fastapi_equeue only: the same two worker processes (each at its default local
              concurrency, 10) on a queue whose global concurrency limit is 20, set before they
              start with ``client.configure_queue("default", concurrency=20)``; skipped, with a
              note, when the installed package has no ``configure_queue``
  mixed       fastapi_equeue only: the REST API (uvicorn, concurrency=0) takes --mixed-jobs
              POST /jobs from 16 concurrent loopback connections while a worker drains them

After the rounds, fastapi_equeue's claim, batched completion and insert are EXPLAINed
(``bench/explain.py``) on a copy of its big history, or on a small table without one.

It prints one table of medians, with every figure's ratio to the best peer, and writes
``docs/benchmarks.md`` (with ``docs/benchmarks.png``).
"""

import argparse
import contextlib
import functools
import json
import os
import platform
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import explain
import psycopg
import report
from infra import (
    REPO,
    BenchError,
    Server,
    Worker,
    ensure_venv,
    find_python,
    postgres_cpu_seconds,
    run_adapter,
    spawn,
    venv_python,
    versions,
    wait_file,
)
from libraries import EQUEUE, LIBRARIES, OURS, Library

SCENARIOS = (
    "enqueue",
    "bulk",
    "process",
    "latency",
    "claim",
    "big",
    "sqlite",
    "twoworkers",
    "limited",
    "mixed",
)
OURS_ONLY = ("sqlite", "twoworkers", "limited", "mixed")
LIMITED_CONCURRENCY = 20
# The limited run's poll: unfinished jobs (the drain's end) and the jobs processing right now
# (the most seen is reported beside the limit, a check that it held at every 20 ms sample).
LIMITED_POLL_SQL = (
    "SELECT count(*) FILTER (WHERE status IN ('queued', 'retrying', 'processing')), "
    "count(*) FILTER (WHERE status = 'processing') FROM equeue_jobs"
)
POLL = 0.02
SETTLE = 3.0
HISTORY_BATCH = 1_000_000
EXPLAIN_HISTORY = 100_000
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 3, "n": 10_000, "bulk_calls": 10, "jobs": 10_000, "latency_jobs": 200,
        "claims": 1_000, "big_rows": 10_000_000, "mixed_jobs": 5_000, "configs": "default,c10,c50",
    },
    "quick": {
        "rounds": 1, "n": 1_000, "bulk_calls": 3, "jobs": 2_000, "latency_jobs": 50,
        "claims": 200, "big_rows": 200_000, "mixed_jobs": 1_000, "configs": "default",
    },
}  # fmt: skip


@dataclass
class Results:
    """Every measured value: ``values[metric][library]`` is one value per round."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, lib: str, value: float) -> None:
        self.values.setdefault(metric, {}).setdefault(lib, []).append(value)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (linear interpolation between closest ranks)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Bench:
    """Runs the measurements; one instance per run."""

    def __init__(self, args: argparse.Namespace, server: Server, work: Path) -> None:
        self.args = args
        self.server = server
        self.work = work
        self.results = Results()
        self.templates: dict[str, str] = {}
        self._runs = 0

    # -- helpers ---------------------------------------------------------------------------

    def run_dir(self, name: str) -> Path:
        self._runs += 1
        return self.work / f"{self._runs:04d}-{name}"

    def adapter(self, lib: Library, command: str, dsn: str, *options: str) -> dict[str, Any]:
        return run_adapter(lib, command, dsn, *options, timeout=self.args.timeout)

    @contextlib.contextmanager
    def database(self, lib: Library, template: str | None = None) -> Iterator[str]:
        """A fresh database with the library's schema (or a copy of ``template``)."""
        name = self.server.create(lib.key, template)
        try:
            if template is None:
                self.server.execute(name, "CHECKPOINT")
                self.adapter(lib, "install", self.server.dsn(name))
            else:
                # The copy's gigabytes sit in the page cache: write them out now, not while
                # the measurement runs.
                os.sync()
            yield name
        finally:
            self.server.drop(name)

    def worker_options(self, config: str, jobs: int, *extra: str) -> tuple[str, ...]:
        max_seconds = str(self.args.timeout + 60)
        return ("--config", config, "--jobs", str(jobs), "--max-seconds", max_seconds, *extra)

    def wait_drained(self, count: Callable[[], int], workers: list[Worker]) -> float:
        """Poll every 20 ms until ``count()`` is 0; the ``time.time()`` it was seen."""
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            if count() == 0:
                return time.time()
            for worker in workers:
                if not worker.alive():
                    raise BenchError(f"{worker.lib.name} worker exited early:\n{worker.tail()}")
            time.sleep(POLL)
        raise BenchError(f"jobs were still unfinished after {self.args.timeout:.0f}s")

    def pg_counter(self, conn: psycopg.Connection[Any], query: str) -> Callable[[], int]:
        def count() -> int:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0

        return count

    def peak_counter(
        self, conn: psycopg.Connection[Any], query: str, peaks: list[int]
    ) -> Callable[[], int]:
        """A counter for ``wait_drained`` from a query of (unfinished, processing) that keeps
        the most processing seen in ``peaks[0]``."""

        def count() -> int:
            row = conn.execute(query).fetchone()
            if row is None:
                return 0
            peaks[0] = max(peaks[0], int(row[1]))
            return int(row[0])

        return count

    # -- scenarios -------------------------------------------------------------------------

    def enqueue(self, lib: Library) -> None:
        with self.database(lib) as db:
            answer = self.adapter(lib, "enqueue", self.server.dsn(db), "--n", str(self.args.n))
        self.results.add("enqueue", lib.name, answer["rate"])

    def bulk(self, lib: Library) -> None:
        with self.database(lib) as db:
            calls = str(self.args.bulk_calls)
            answer = self.adapter(lib, "bulk", self.server.dsn(db), "--calls", calls)
        self.results.add("bulk", lib.name, answer["rate"])

    def process(self, lib: Library) -> None:
        done: set[str] = set()
        for config in lib.configs:
            if config.adapter in done or config.label not in self.args.configs:
                continue
            done.add(config.adapter)
            with self.database(lib) as db:
                figures = self.processing(lib, db, config.adapter, workers=1)
            for other in lib.configs:
                if other.adapter == config.adapter and other.label in self.args.configs:
                    for name, value in figures.items():
                        self.results.add(f"process.{other.label}.{name}", lib.name, value)

    def processing(
        self,
        lib: Library,
        db: str,
        config: str,
        *,
        workers: int,
        history: bool = False,
        peak_sql: str | None = None,
    ) -> dict[str, float]:
        """Pre-queue, VACUUM ANALYZE, then time ``workers`` worker processes draining.

        With ``peak_sql`` (a query of two counts: unfinished jobs, jobs processing) each poll
        also keeps the most jobs seen processing at once, as ``figures["peak"]``.
        """
        jobs = self.args.jobs
        dsn = self.server.dsn(db)
        self.adapter(lib, "prequeue", dsn, "--n", str(jobs))
        self.server.vacuum_analyze(db, lib.tables)
        peaks: list[int] = [0]
        with psycopg.connect(dsn, autocommit=True) as conn:
            if peak_sql is None:
                count = self.pg_counter(conn, lib.unfinished_sql)
            else:
                count = self.peak_counter(conn, peak_sql, peaks)
            if count() != jobs:
                raise BenchError(f"{lib.name}: {count()} jobs queued, expected {jobs}")
            pg_before = postgres_cpu_seconds()
            started = [
                spawn(
                    lib,
                    dsn,
                    self.run_dir(f"{lib.key}-{config}"),
                    *self.worker_options(config, jobs),
                )
                for _ in range(workers)
            ]
            try:
                end = self.wait_drained(count, started)
                rss = max(w.peak_rss_mib() for w in started)
                pg_cpu = postgres_cpu_seconds() - pg_before
            except BaseException:
                for worker in started:
                    worker.stop()
                    sys.stderr.write(worker.tail())
                raise
            for worker in started:
                worker.stop()
            completed = None if history else conn.execute(lib.completed_sql).fetchone()
        if completed is not None and completed[0] != jobs:
            raise BenchError(f"{lib.name}: {completed[0]} of {jobs} jobs completed")
        t0 = min(w.t0() for w in started)
        figures = {
            "db": jobs / (end - t0),
            "cpu": sum(w.cpu or 0.0 for w in started),
            "pg_cpu": pg_cpu,
            "rss": rss,
        }
        if peak_sql is not None:
            figures["peak"] = peaks[0]
        if workers == 1:
            info = wait_file(started[0].run_dir / "exec", [], 5.0)
            figures["exec"] = jobs / (info["t"] - t0)
            figures["duplicates"] = info["count"] - info["distinct"]
        return figures

    def latency(self, lib: Library) -> None:
        n = self.args.latency_jobs
        with self.database(lib) as db:
            dsn = self.server.dsn(db)
            worker = spawn(
                lib,
                dsn,
                self.run_dir(f"{lib.key}-latency"),
                *self.worker_options("default", n, "--latency"),
            )
            try:
                worker.wait_t0(60.0)
                time.sleep(SETTLE)
                self.adapter(lib, "paced", dsn, "--n", str(n), "--gap", "0.02")
                samples = wait_file(worker.run_dir / "latency", [worker], 30.0)
                rss = worker.peak_rss_mib()
            finally:
                worker.stop()
        ms = [s * 1000 for s in samples]
        for q in (50, 95, 99):
            self.results.add(f"latency.p{q}", lib.name, percentile(ms, q))
        self.results.add("latency.max", lib.name, max(ms))
        self.results.add("rss.idle", lib.name, rss)

    def claims(self, lib: Library, db: str, metric: str) -> None:
        """Time the library's claim of one job, ``--claims`` times after 20 warm-ups."""
        dsn = self.server.dsn(db)
        self.adapter(lib, "prequeue", dsn, "--n", str(self.args.claims + 40))
        self.server.vacuum_analyze(db, lib.tables)
        answer = self.adapter(lib, "claim", dsn, "--n", str(self.args.claims), "--warmup", "20")
        ms = [s * 1000 for s in answer["claims"]]
        self.results.add(f"{metric}.p50", lib.name, percentile(ms, 50))
        self.results.add(f"{metric}.p99", lib.name, percentile(ms, 99))

    def claim(self, lib: Library) -> None:
        with self.database(lib) as db:
            self.claims(lib, db, "claim")

    def build_history(self, lib: Library) -> None:
        """The big scenario's template: the schema plus ``--big-rows`` finished jobs."""
        if lib.history_sql is None:
            return
        rows = self.args.big_rows
        started = time.monotonic()
        name = self.server.create(f"big_{lib.key}")
        self.templates[lib.name] = name
        self.adapter(lib, "install", self.server.dsn(name))
        with psycopg.connect(self.server.dsn(name), autocommit=True) as conn:
            for lo in range(0, rows, HISTORY_BATCH):
                hi = min(lo + HISTORY_BATCH, rows)
                conn.execute(lib.history_sql, {"lo": lo, "hi": hi, "total": rows})
        self.server.vacuum_analyze(name, lib.tables)
        self.server.execute(name, "CHECKPOINT")
        size = self.server.scalar(
            name, "SELECT pg_size_pretty(pg_database_size(current_database()))"
        )
        seconds = time.monotonic() - started
        self.results.notes.setdefault("history", {})[lib.name] = {"seconds": seconds, "size": size}
        print(
            f"  built {rows:,} finished jobs for {lib.name} in {seconds:.0f}s ({size})", flush=True
        )

    def big(self, lib: Library) -> None:
        template = self.templates.get(lib.name)
        if template is None:
            return
        with self.database(lib, template) as db:
            figures = self.processing(lib, db, "default", workers=1, history=True)
            self.results.add("big.process", lib.name, figures["db"])
            self.claims(lib, db, "big.claim")

    # -- fastapi_equeue only ---------------------------------------------------------------

    def sqlite(self) -> None:
        lib = EQUEUE
        for command, options in (("enqueue", ("--n", str(self.args.n))),
                                 ("bulk", ("--calls", str(self.args.bulk_calls)))):  # fmt: skip
            path = self.work / f"sqlite-{uuid.uuid4().hex[:8]}.db"
            dsn = f"sqlite+aiosqlite:///{path}"
            self.adapter(lib, "install", dsn)
            answer = self.adapter(lib, command, dsn, *options)
            self.results.add(f"sqlite.{command}", lib.name, answer["rate"])
        path = self.work / f"sqlite-{uuid.uuid4().hex[:8]}.db"
        dsn = f"sqlite+aiosqlite:///{path}"
        jobs = self.args.jobs
        self.adapter(lib, "install", dsn)
        self.adapter(lib, "prequeue", dsn, "--n", str(jobs))
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:

            def count() -> int:
                return int(conn.execute(lib.unfinished_sql).fetchone()[0])

            worker = spawn(lib, dsn, self.run_dir("sqlite"), *self.worker_options("default", jobs))
            try:
                end = self.wait_drained(count, [worker])
                rss = worker.peak_rss_mib()
            finally:
                worker.stop()
            completed = conn.execute(lib.completed_sql).fetchone()[0]
        if completed != jobs:
            raise BenchError(f"SQLite: {completed} of {jobs} jobs completed")
        t0 = worker.t0()
        info = wait_file(worker.run_dir / "exec", [], 5.0)
        self.results.add("sqlite.process", lib.name, jobs / (end - t0))
        self.results.add("sqlite.exec", lib.name, jobs / (info["t"] - t0))
        self.results.add("sqlite.rss", lib.name, rss)

    def twoworkers(self) -> None:
        with self.database(EQUEUE) as db:
            figures = self.processing(EQUEUE, db, "default", workers=2)
        self.results.add("two.process", OURS, figures["db"])
        self.results.add("two.cpu", OURS, figures["cpu"])
        self.results.add("two.pg_cpu", OURS, figures["pg_cpu"])

    def limited(self) -> None:
        """Two worker processes on a queue with a global concurrency limit (ours only)."""
        with self.database(EQUEUE) as db:
            limit = str(LIMITED_CONCURRENCY)
            answer = self.adapter(EQUEUE, "configure", self.server.dsn(db), "--concurrency", limit)
            if "skipped" in answer:
                note = f"limited: skipped: {answer['skipped']}"
                skipped = self.results.notes.setdefault("skipped", [])
                if note not in skipped:
                    skipped.append(note)
                print(f"  {note}", flush=True)
                return
            figures = self.processing(EQUEUE, db, "default", workers=2, peak_sql=LIMITED_POLL_SQL)
        self.results.add("limited.process", OURS, figures["db"])
        self.results.add("limited.cpu", OURS, figures["cpu"])
        self.results.add("limited.pg_cpu", OURS, figures["pg_cpu"])
        self.results.add("limited.peak", OURS, figures["peak"])

    def mixed(self) -> None:
        lib = EQUEUE
        n = self.args.mixed_jobs
        with self.database(lib) as db:
            dsn = self.server.dsn(db)
            port = free_port()
            web = spawn(
                lib,
                dsn,
                self.run_dir("mixed-web"),
                "--port",
                str(port),
                "--max-seconds",
                str(self.args.timeout + 60),
                command="serve",
            )
            worker = spawn(
                lib, dsn, self.run_dir("mixed-worker"), *self.worker_options("default", n)
            )
            try:
                load = self.adapter(
                    lib,
                    "load",
                    dsn,
                    "--port",
                    str(port),
                    "--n",
                    str(n),
                    "--concurrency",
                    "16",
                    "--max-seconds",
                    str(self.args.timeout),
                )
                with psycopg.connect(dsn, autocommit=True) as conn:
                    end = self.wait_drained(self.pg_counter(conn, lib.unfinished_sql), [worker])
                    completed = conn.execute(lib.completed_sql).fetchone()
                web_rss = web.peak_rss_mib()
            finally:
                worker.stop()
                web.stop()
        if load["errors"] or load["sent"] != n or not completed or completed[0] != n:
            raise BenchError(f"mixed run: {load}, {completed} completed of {n}")
        self.results.add("mixed.submit", OURS, n / (load["t_end"] - load["t_start"]))
        self.results.add("mixed.drain", OURS, n / (end - load["t_start"]))
        self.results.add("mixed.web_rss", OURS, web_rss)

    def explain(self) -> None:
        """EXPLAIN the hot statements on a copy of fastapi_equeue's big history (without one, on
        a fresh table of ``EXPLAIN_HISTORY`` finished jobs), the processing backlog queued."""
        template = self.templates.get(OURS)
        with self.database(EQUEUE, template) as db:
            dsn = self.server.dsn(db)
            if template is None:
                explain.fill_history(dsn, EXPLAIN_HISTORY)
            self.adapter(EQUEUE, "prequeue", dsn, "--n", str(self.args.jobs))
            self.server.vacuum_analyze(db, EQUEUE.tables)
            found = explain.hot_plans(dsn, explain.load_queries(venv_python(EQUEUE)))
        history = self.args.big_rows if template else EXPLAIN_HISTORY
        self.results.notes["plans"] = {"big": template is not None, "history": history, **found}
        for entry in found["plans"]:
            if "error" in entry:
                self.results.failures.append(f"explain {entry['name']}: {entry['error']}")

    # -- the run ---------------------------------------------------------------------------

    def attempt(self, label: str, action: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            action()
        except (BenchError, psycopg.Error, OSError, ValueError, KeyError) as exc:
            message = f"{label}: {type(exc).__name__}: {exc}"
            self.results.failures.append(message.splitlines()[0][:300])
            print(f"  FAILED {message}", file=sys.stderr, flush=True)
            if self.args.verbose:
                traceback.print_exc()
            return
        print(f"  {label} ({time.monotonic() - started:.1f}s)", flush=True)

    def run(self, libs: list[Library]) -> None:
        scenarios = self.args.scenarios
        if "big" in scenarios:
            print(f"building the big history ({self.args.big_rows:,} finished jobs)", flush=True)
            for lib in libs:
                self.attempt(f"history {lib.name}", functools.partial(self.build_history, lib))
        per_library: dict[str, Callable[[Library], None]] = {
            "enqueue": self.enqueue,
            "bulk": self.bulk,
            "process": self.process,
            "latency": self.latency,
            "claim": self.claim,
            "big": self.big,
        }
        ours_only: dict[str, Callable[[], None]] = {
            "sqlite": self.sqlite,
            "twoworkers": self.twoworkers,
            "limited": self.limited,
            "mixed": self.mixed,
        }
        for round_number in range(self.args.rounds):
            shift = round_number % len(libs)
            order = libs[shift:] + libs[:shift]
            print(
                f"round {round_number + 1}/{self.args.rounds}: "
                f"{', '.join(lib.name for lib in order)}",
                flush=True,
            )
            for scenario in scenarios:
                if scenario in per_library:
                    for lib in order:
                        measure = per_library[scenario]
                        self.attempt(f"{scenario} {lib.name}", functools.partial(measure, lib))
                elif any(lib.name == OURS for lib in libs):
                    self.attempt(f"{scenario} {OURS}", ours_only[scenario])
        if any(lib.name == OURS for lib in libs):
            self.attempt(f"explain {OURS}", self.explain)
        for name in list(self.templates.values()):
            self.server.drop(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def machine() -> dict[str, str]:
    facts = {"nproc": str(len(os.sched_getaffinity(0)))}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            facts["cpu"] = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            facts["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    facts["kernel"] = platform.release()
    facts["driver python"] = platform.python_version()
    return facts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="nox -s bench --",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[2:3]),
    )
    full, quick = SIZES["full"], SIZES["quick"]
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round, small N, default configs, --big-rows 200000",
    )
    p.add_argument("--rounds", type=int, help=f"({full['rounds']})")
    p.add_argument(
        "--libs", default=",".join(LIBRARIES), help=f"comma-separated, of {', '.join(LIBRARIES)}"
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)}",
    )
    p.add_argument("--no-big", action="store_true", help="leave out the big-history scenario")
    p.add_argument("--configs", help=f"processing configs (default {full['configs']})")
    p.add_argument("--n", type=int, help=f"single enqueues per measurement ({full['n']:,})")
    p.add_argument("--bulk-calls", type=int, help=f"bulk calls of 1,000 ({full['bulk_calls']})")
    p.add_argument(
        "--jobs", type=int, help=f"pre-queued jobs per processing run ({full['jobs']:,})"
    )
    p.add_argument("--latency-jobs", type=int, help=f"({full['latency_jobs']})")
    p.add_argument("--claims", type=int, help=f"timed claims per measurement ({full['claims']:,})")
    p.add_argument(
        "--big-rows", type=int, help=f"finished jobs in the big table ({full['big_rows']:,})"
    )
    p.add_argument("--mixed-jobs", type=int, help=f"({full['mixed_jobs']:,})")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--python312", default=None, help="the interpreter for oban's venv")
    p.add_argument(
        "--output",
        type=Path,
        default=REPO / "docs" / "benchmarks.md",
        help="the report to write ('-' for none)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write every raw value here")
    p.add_argument(
        "--no-reinstall",
        action="store_true",
        help="keep the fastapi_equeue venv's installed copy of the repository",
    )
    p.add_argument(
        "--report-from",
        type=Path,
        default=None,
        help="measure nothing: rewrite the report from a --json file of an earlier run",
    )
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    args.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    if args.no_big:
        args.scenarios = [x for x in args.scenarios if x != "big"]
    args.configs = [x.strip() for x in args.configs.split(",") if x.strip()]
    if unknown := set(args.libs) - set(LIBRARIES):
        p.error(f"unknown libraries {sorted(unknown)}")
    if unknown := set(args.scenarios) - set(SCENARIOS):
        p.error(f"unknown scenarios {sorted(unknown)}")
    if unknown := set(args.configs) - {"default", "c10", "c50"}:
        p.error(f"unknown configs {sorted(unknown)}")
    host = args.admin_dsn.split("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        p.error(f"the benchmark talks to a loopback server only, not {host!r}")
    sizes = (
        args.rounds,
        args.n,
        args.bulk_calls,
        args.jobs,
        args.latency_jobs,
        args.claims,
        args.big_rows,
        args.mixed_jobs,
    )
    if min(sizes) < 1 or args.timeout <= 0:
        p.error("counts must be at least 1 and --timeout positive")
    return args


def report_from(path: Path, output: Path) -> int:
    """Rewrite the report (and print the table) from the raw values of an earlier run."""
    saved = json.loads(path.read_text())
    results = Results(values=saved["values"], failures=saved["failures"], notes=saved["notes"])
    args = argparse.Namespace(**saved["notes"]["args"])
    libs = [LIBRARIES[name] for name in args.libs if name in saved["notes"]["versions"]]
    print(report.console_table(results, libs, args))
    report.write_markdown(results, libs, args, output)
    print(f"\nwrote {output} and {output.with_suffix('.png')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_from is not None:
        return report_from(args.report_from, args.output)
    started = time.monotonic()
    libs: list[Library] = []
    for name in args.libs:
        lib = LIBRARIES[name]
        interpreter = find_python(lib.python, args.python312 if lib.python == "3.12" else None)
        if interpreter is None:
            print(f"warning: no Python {lib.python} found: {lib.name} is skipped", file=sys.stderr)
            continue
        ensure_venv(lib, interpreter, reinstall_ours=not args.no_reinstall)
        libs.append(lib)
    server = Server(args.admin_dsn)
    with tempfile.TemporaryDirectory(prefix="equeue-bench-") as tmp:
        bench = Bench(args, server, Path(tmp))
        try:
            bench.run(libs)
        finally:
            server.drop_all()
    results = bench.results
    results.notes["elapsed"] = time.monotonic() - started
    results.notes["machine"] = machine()
    results.notes["postgres"] = server.facts()
    results.notes["versions"] = {lib.name: versions(lib) for lib in libs}
    results.notes["args"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
    }
    table = report.console_table(results, libs, args)
    print()
    print(table)
    if results.failures:
        print("\nfailures:\n  " + "\n  ".join(results.failures))
    if results.notes.get("skipped"):
        print("\nskipped:\n  " + "\n  ".join(results.notes["skipped"]))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"values": results.values, "notes": results.notes, "failures": results.failures},
                indent=1,
            )
        )
    if str(args.output) != "-":
        report.write_markdown(results, libs, args, args.output)
        print(f"\nwrote {args.output} and {args.output.with_suffix('.png')}")
    print(f"elapsed: {results.notes['elapsed'] / 60:.1f} min")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
