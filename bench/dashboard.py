"""How fast the dashboard's pages answer on a jobs table of a million rows, on SQLite and on
PostgreSQL. Not a test: it prints a table and writes a JSON report.

Run it with ``python bench/dashboard.py [--backends sqlite,postgres] [--rows 1000000]
[--repeat 20] [--keep]``. For each backend it:

- creates a database (a fresh PostgreSQL database on ``--admin-url``, or a SQLite file) and lets
  the package create its schema (``async with EQueue(url, concurrency=0)``);
- fills it with set-based SQL (PostgreSQL: ``INSERT ... SELECT FROM generate_series``; SQLite:
  ``WITH RECURSIVE``): ``--rows`` jobs, about 90% completed, 5% failed (three attempts, each in
  the error history with a traceback), 2% cancelled, 2% queued, 0.5% retrying, 0.5% processing,
  over 8 queues and 20 job types; finished jobs created over the last 30 days (the newest a
  minute ago, so the last hour has outcomes), unfinished ones within the last hour; plus four
  workers, three queues with settings and the app's four schedules. Then ANALYZE;
- serves ``bench/dashboard_app.py`` with uvicorn on 127.0.0.1 (``concurrency=0``: no workers);
- requests every URL of ``URLS`` in turn over one keep-alive connection: the first request
  (reported as "first": the URL's first answer since the server started, its caches cold), two
  warm-ups, then ``--repeat`` timed requests (median and p95). A URL that answers 404 is skipped
  with a note: the dashboard's pages are measured once they exist.

With ``--keep`` the database is kept (SQLite ``/tmp/equeue-bench-1m.db``, PostgreSQL
``equeue_bench_1m``, for 1,000,000 rows) and reused by the next run when it holds ``--rows`` jobs.
The table is printed as markdown; the raw figures go to ``--json`` (by default
``bench/results/dashboard-<timestamp>.json`` when ``bench/results`` exists).
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dashboard_app import JOB_TYPES, QUEUES, SCHEDULES, TYPE_QUEUE

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BACKENDS = ("sqlite", "postgres")
WARMUP = 2
START_TIMEOUT = 60.0
STOP_WAIT = 30.0
# The pages, in the order they are requested; ``{job_id}`` is a failed job of the table.
URLS = (
    # The JSON routes of the jobs router.
    "/jobs/queues",
    "/jobs/stats",
    "/jobs?status=failed&limit=50",
    "/jobs?limit=50",
    "/jobs/schedules",
    "/jobs/{job_id}",
    # The dashboard (its contract: HTML pages under /jobs/dashboard); skipped while they 404.
    "/jobs/dashboard",
    "/jobs/dashboard/queues",
    "/jobs/dashboard/active",
    "/jobs/dashboard/failures",
    "/jobs/dashboard/jobs",
    "/jobs/dashboard/jobs?status=failed",
    "/jobs/dashboard/jobs?queue=q3",
    "/jobs/dashboard/jobs/{job_id}",
    "/jobs/dashboard/workers",
    "/jobs/dashboard/schedules",
)
# Opens the pool's connection before the first measured request (a job that does not exist).
POOL_WARMUP_URL = "/jobs/00000000-0000-7000-8000-000000000000"
WORKERS = tuple(f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))
DAY_US = 86_400_000_000

# -- the populate statements -------------------------------------------------------------------
#
# One row per n in 1..rows, its mix drawn from multiplicative hashes of n (the same rows on both
# backends): ``bucket`` (0..999) picks the status, ``v`` the job type (and so the queue) and run
# time, ``w`` the wait, the error kind and the worker. Finished jobs are created in n's order over
# the 30 days before ``now`` minus a minute, unfinished ones within the hour before ``now``. Ids
# are UUIDv7-shaped (creation time in milliseconds first), unique by n.

PG_JOBS = """
INSERT INTO equeue_jobs (
    id, job_type, queue, status, payload, priority, attempts, max_attempts, created_at,
    scheduled_at, started_at, finished_at, result, last_error, errors, worker_id, progress)
WITH s AS (
    SELECT n,
           (n * 2654435761) % 1000003 % 1000 AS bucket,
           (n * 2246822519) % 999983 AS v,
           (n * 3266489917) % 1000033 AS w
    FROM generate_series(1, $1::bigint) AS n
),
t AS (
    SELECT n, v, w, v % 20 AS k,
           CASE WHEN bucket < 900 THEN 'completed' WHEN bucket < 950 THEN 'failed'
                WHEN bucket < 970 THEN 'cancelled' WHEN bucket < 990 THEN 'queued'
                WHEN bucket < 995 THEN 'retrying' ELSE 'processing' END AS status
    FROM s
),
c AS (
    SELECT t.*,
           CASE WHEN status IN ('completed', 'failed', 'cancelled')
                THEN $2::bigint - 60000000 - ($1::bigint - n) * ($3::bigint / $1::bigint)
                ELSE $2::bigint - (w % 3600) * 1000000 - (w % 1000) * 1000 END AS created,
           (w % 2000) * 1000 AS wait,
           20000 + (v % 5000) * 1000 AS run,
           CASE w % 4 WHEN 0 THEN 'TimeoutError: the attempt ran longer than 30 s'
                      WHEN 1 THEN 'ValueError: item ' || n || ' is not valid'
                      WHEN 2 THEN 'ConnectionError: the upstream refused the connection'
                      ELSE 'KeyError: ''customer''' END AS err
    FROM t
),
j AS (
    SELECT c.*,
           'Traceback (most recent call last):' || chr(10)
           || '  File "/app/tasks.py", line ' || (40 + k * 7) || ', in t' || lpad(k::text, 2, '0')
           || chr(10) || '    result = await client.process(item)' || chr(10) || err AS tb,
           CASE WHEN status IN ('completed', 'failed', 'retrying', 'processing')
                THEN least(created + wait, $2::bigint) END AS started
    FROM c
),
f AS (
    SELECT j.*,
           CASE status WHEN 'completed' THEN started + run WHEN 'failed' THEN started + 3 * run
                       WHEN 'cancelled' THEN created + wait END AS finished
    FROM j
),
e AS (
    SELECT f.*,
           TIMESTAMPTZ 'epoch' + created * INTERVAL '1 microsecond' AS created_ts,
           TIMESTAMPTZ 'epoch' + started * INTERVAL '1 microsecond' AS started_ts,
           TIMESTAMPTZ 'epoch' + finished * INTERVAL '1 microsecond' AS finished_ts
    FROM f
)
SELECT
    (lpad(to_hex(created / 1000), 12, '0') || '7' || lpad(to_hex(w % 4096), 3, '0') || '8'
     || lpad(to_hex(v % 1048576), 5, '0') || lpad(to_hex(n), 10, '0'))::uuid,
    't' || lpad(k::text, 2, '0'),
    'q' || (k % 8),
    status,
    jsonb_build_object('item', n, 'source', 'bench'),
    CASE WHEN v % 10 = 0 THEN 5 ELSE 0 END,
    CASE status WHEN 'completed' THEN 1 WHEN 'failed' THEN 3 WHEN 'retrying' THEN 1
                WHEN 'processing' THEN 1 ELSE 0 END,
    3,
    created_ts,
    CASE WHEN status = 'retrying'
         THEN TIMESTAMPTZ 'epoch' + ($2::bigint + (w % 600) * 1000000) * INTERVAL '1 microsecond'
         ELSE created_ts END,
    started_ts,
    finished_ts,
    CASE WHEN status = 'completed' THEN jsonb_build_object('ok', true, 'item', n) END,
    CASE WHEN status IN ('failed', 'retrying') THEN err END,
    CASE status
        WHEN 'failed' THEN jsonb_build_array(
            jsonb_build_object('attempt', 1, 'error', err, 'traceback', tb,
                               'at', started_ts + run * INTERVAL '1 microsecond',
                               'worker_id', '00000000-0000-4000-8000-00000000000' || (w % 4 + 1)),
            jsonb_build_object('attempt', 2, 'error', err, 'traceback', tb,
                               'at', started_ts + 2 * run * INTERVAL '1 microsecond',
                               'worker_id', '00000000-0000-4000-8000-00000000000' || (v % 4 + 1)),
            jsonb_build_object('attempt', 3, 'error', err, 'traceback', tb, 'at', finished_ts,
                               'worker_id', '00000000-0000-4000-8000-00000000000' || (n % 4 + 1)))
        WHEN 'retrying' THEN jsonb_build_array(
            jsonb_build_object('attempt', 1, 'error', err, 'traceback', tb,
                               'at', started_ts + run * INTERVAL '1 microsecond',
                               'worker_id', '00000000-0000-4000-8000-00000000000' || (w % 4 + 1)))
        ELSE '[]'::jsonb END,
    CASE WHEN status = 'processing'
         THEN ('00000000-0000-4000-8000-00000000000' || (w % 4 + 1))::uuid END,
    CASE WHEN status = 'processing' AND w % 2 = 0
         THEN jsonb_build_object('fraction', (w % 100) / 100.0, 'message', 'step ' || (w % 10),
                                 'at', started_ts + (v % 5000) * INTERVAL '1 millisecond') END
FROM e
"""

SQLITE_JOBS = """
INSERT INTO equeue_jobs (
    id, job_type, queue, status, payload, priority, attempts, max_attempts, created_at,
    scheduled_at, started_at, finished_at, result, last_error, errors, worker_id, progress)
WITH RECURSIVE seq (n) AS (
    SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :rows
),
s AS (
    SELECT n,
           (n * 2654435761) % 1000003 % 1000 AS bucket,
           (n * 2246822519) % 999983 AS v,
           (n * 3266489917) % 1000033 AS w
    FROM seq
),
t AS (
    SELECT n, v, w, v % 20 AS k,
           CASE WHEN bucket < 900 THEN 'completed' WHEN bucket < 950 THEN 'failed'
                WHEN bucket < 970 THEN 'cancelled' WHEN bucket < 990 THEN 'queued'
                WHEN bucket < 995 THEN 'retrying' ELSE 'processing' END AS status
    FROM s
),
c AS (
    SELECT t.*,
           CASE WHEN status IN ('completed', 'failed', 'cancelled')
                THEN :now - 60000000 - (:rows - n) * (:span / :rows)
                ELSE :now - (w % 3600) * 1000000 - (w % 1000) * 1000 END AS created,
           (w % 2000) * 1000 AS wait,
           20000 + (v % 5000) * 1000 AS run,
           CASE w % 4 WHEN 0 THEN 'TimeoutError: the attempt ran longer than 30 s'
                      WHEN 1 THEN 'ValueError: item ' || n || ' is not valid'
                      WHEN 2 THEN 'ConnectionError: the upstream refused the connection'
                      ELSE 'KeyError: ''customer''' END AS err
    FROM t
),
j AS (
    SELECT c.*,
           'Traceback (most recent call last):' || char(10)
           || '  File "/app/tasks.py", line ' || (40 + k * 7) || ', in ' || printf('t%02d', k)
           || char(10) || '    result = await client.process(item)' || char(10) || err AS tb,
           CASE WHEN status IN ('completed', 'failed', 'retrying', 'processing')
                THEN min(created + wait, :now) END AS started,
           printf('%012x', created / 1000) || '7' || printf('%03x', w % 4096) || '8'
           || printf('%05x', v % 1048576) || printf('%010x', n) AS h
    FROM c
),
f AS (
    SELECT j.*,
           CASE status WHEN 'completed' THEN started + run WHEN 'failed' THEN started + 3 * run
                       WHEN 'cancelled' THEN created + wait END AS finished
    FROM j
)
SELECT
    substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-'
    || substr(h, 17, 4) || '-' || substr(h, 21, 12),
    printf('t%02d', k),
    'q' || (k % 8),
    status,
    json_object('item', n, 'source', 'bench'),
    CASE WHEN v % 10 = 0 THEN 5 ELSE 0 END,
    CASE status WHEN 'completed' THEN 1 WHEN 'failed' THEN 3 WHEN 'retrying' THEN 1
                WHEN 'processing' THEN 1 ELSE 0 END,
    3,
    created,
    CASE WHEN status = 'retrying' THEN :now + (w % 600) * 1000000 ELSE created END,
    started,
    finished,
    CASE WHEN status = 'completed' THEN json_object('ok', json('true'), 'item', n) END,
    CASE WHEN status IN ('failed', 'retrying') THEN err END,
    CASE status
        WHEN 'failed' THEN json_array(
            json_object('attempt', 1, 'error', err, 'traceback', tb,
                        'at', strftime('%Y-%m-%dT%H:%M:%f+00:00', (started + run) / 1e6,
                                       'unixepoch'),
                        'worker_id', '00000000-0000-4000-8000-00000000000' || (w % 4 + 1)),
            json_object('attempt', 2, 'error', err, 'traceback', tb,
                        'at', strftime('%Y-%m-%dT%H:%M:%f+00:00', (started + 2 * run) / 1e6,
                                       'unixepoch'),
                        'worker_id', '00000000-0000-4000-8000-00000000000' || (v % 4 + 1)),
            json_object('attempt', 3, 'error', err, 'traceback', tb,
                        'at', strftime('%Y-%m-%dT%H:%M:%f+00:00', finished / 1e6, 'unixepoch'),
                        'worker_id', '00000000-0000-4000-8000-00000000000' || (n % 4 + 1)))
        WHEN 'retrying' THEN json_array(
            json_object('attempt', 1, 'error', err, 'traceback', tb,
                        'at', strftime('%Y-%m-%dT%H:%M:%f+00:00', (started + run) / 1e6,
                                       'unixepoch'),
                        'worker_id', '00000000-0000-4000-8000-00000000000' || (w % 4 + 1)))
        ELSE '[]' END,
    CASE WHEN status = 'processing' THEN '00000000-0000-4000-8000-00000000000' || (w % 4 + 1) END,
    CASE WHEN status = 'processing' AND w % 2 = 0
         THEN json_object('fraction', (w % 100) / 100.0, 'message', 'step ' || (w % 10),
                          'at', strftime('%Y-%m-%dT%H:%M:%f+00:00',
                                         (started + (v % 5000) * 1000) / 1e6, 'unixepoch')) END
FROM f
"""


def _check_mix() -> None:
    # The statements derive the queue of job type k as q(k % 8): the app's rule, checked here.
    for k, job_type in enumerate(JOB_TYPES):
        if job_type != f"t{k:02d}" or TYPE_QUEUE[job_type] != f"q{k % 8}" or len(QUEUES) != 8:
            raise RuntimeError("dashboard_app's job types or queues no longer match the SQL")


# -- results -----------------------------------------------------------------------------------


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (linear interpolation between closest ranks)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Run:
    """One backend's figures."""

    backend: str
    rows: int = 0
    populate_seconds: float | None = None
    reused: bool = False
    job_id: str = ""
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


# -- the databases -----------------------------------------------------------------------------


def label(rows: int) -> str:
    """1000000 -> ``1m``, 200000 -> ``200k``: the kept database's suffix."""
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def now_us() -> int:
    return time.time_ns() // 1_000


async def create_schema(url: str) -> None:
    """The package's migrations, run by starting a queue that runs no workers."""
    import fastapi_equeue as equeue

    async with equeue.EQueue(url, concurrency=0):
        pass


class Postgres:
    """A database on ``--admin-url``'s server: fresh per run, or ``equeue_bench_<rows>`` kept."""

    def __init__(self, args: argparse.Namespace) -> None:
        from sqlalchemy.engine import make_url

        self.args = args
        self.admin = make_url(args.admin_url)
        self.keep = args.keep
        self.database = (
            f"equeue_bench_{label(args.rows)}"
            if args.keep
            else f"bench_dashboard_{uuid.uuid4().hex[:8]}"
        )
        url = self.admin.set(drivername="postgresql+asyncpg", database=self.database)
        self.url = str(url.render_as_string(hide_password=False))

    def _dsn(self, database: str) -> str:
        url = self.admin.set(drivername="postgresql", database=database)
        return str(url.render_as_string(hide_password=False))

    async def _admin(self, statement: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn(str(self.admin.database)), timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def _count(self) -> int | None:
        """The jobs the database holds; None when it (or its table) does not exist."""
        import asyncpg

        try:
            conn = await asyncpg.connect(self._dsn(self.database), timeout=10)
        except asyncpg.InvalidCatalogNameError:
            return None
        try:
            if await conn.fetchval("SELECT to_regclass('equeue_jobs')") is None:
                return None
            return int(await conn.fetchval("SELECT count(*) FROM equeue_jobs"))
        finally:
            await conn.close()

    async def prepare(self, run: Run) -> None:
        import asyncpg

        if self.keep and await self._count() == self.args.rows:
            run.reused = True
        else:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            await self._admin(f'CREATE DATABASE "{self.database}"')
            await create_schema(self.url)
            started = time.monotonic()
            conn = await asyncpg.connect(self._dsn(self.database), timeout=10)
            try:
                await conn.execute(
                    "SET synchronous_commit = off; SET TimeZone = 'UTC'; SET work_mem = '256MB'"
                )
                now = now_us()
                await conn.execute(PG_JOBS, self.args.rows, now, 30 * DAY_US, timeout=None)
                for name, rows in extras(now).items():
                    await conn.executemany(PG_EXTRAS[name], rows)
                await conn.execute("VACUUM (ANALYZE) equeue_jobs", timeout=None)
                await conn.execute("ANALYZE")
            finally:
                await conn.close()
            run.populate_seconds = time.monotonic() - started
        conn = await asyncpg.connect(self._dsn(self.database), timeout=10)
        try:
            run.rows = int(await conn.fetchval("SELECT count(*) FROM equeue_jobs"))
            run.job_id = str(await conn.fetchval(LAST_FAILED))
        finally:
            await conn.close()

    async def cleanup(self) -> None:
        if not self.keep:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class SQLite:
    """A file: in a temporary folder per run, or ``/tmp/equeue-bench-<rows>.db`` kept."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.keep = args.keep
        folder = Path(tempfile.gettempdir()) if args.keep else work
        self.path = folder / f"equeue-bench-{label(args.rows)}.db"
        self.url = f"sqlite+aiosqlite:///{self.path}"

    def _count(self) -> int | None:
        if not self.path.exists():
            return None
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            try:
                return int(conn.execute("SELECT count(*) FROM equeue_jobs").fetchone()[0])
            except sqlite3.OperationalError:
                return None

    def _remove(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    async def prepare(self, run: Run) -> None:
        if self.keep and self._count() == self.args.rows:
            run.reused = True
        else:
            self._remove()
            await create_schema(self.url)
            started = time.monotonic()
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                conn.execute("PRAGMA synchronous = OFF")
                conn.execute("PRAGMA cache_size = -1000000")
                now = now_us()
                conn.execute("BEGIN")
                conn.execute(SQLITE_JOBS, {"rows": self.args.rows, "now": now, "span": 30 * DAY_US})
                for name, rows in extras(now).items():
                    conn.executemany(SQLITE_EXTRAS[name], rows)
                conn.execute("COMMIT")
                conn.execute("ANALYZE")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            run.populate_seconds = time.monotonic() - started
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            run.rows = int(conn.execute("SELECT count(*) FROM equeue_jobs").fetchone()[0])
            run.job_id = str(conn.execute(LAST_FAILED).fetchone()[0])

    async def cleanup(self) -> None:
        if not self.keep:
            self._remove()


LAST_FAILED = "SELECT id FROM equeue_jobs WHERE status = 'failed' ORDER BY created_at DESC LIMIT 1"


def extras(now: int) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the other tables at ``now`` (microseconds): workers (beating), queues with
    settings and the app's schedules, by statement (see ``PG_EXTRAS`` and ``SQLITE_EXTRAS``)."""
    return {
        "workers": [
            (w, f"bench-host-{i}", 1000 + i, 10, now - DAY_US, now - i * 1_000_000)
            for i, w in enumerate(WORKERS, start=1)
        ],
        "queues": [
            ("q3", False, 5, None, None, now),
            ("q5", False, None, 100, 60, now),
            ("q7", True, None, None, None, now),
        ],
        "schedules": [
            (name, cron, "UTC", job_type, '{"item": 0}', now - 60_000_000, now)
            for name, cron, job_type in SCHEDULES
        ],
    }


PG_EXTRAS = {
    "workers": """
        INSERT INTO equeue_workers (id, hostname, pid, concurrency, started_at, last_beat_at)
        VALUES ($1::uuid, $2, $3, $4, TIMESTAMPTZ 'epoch' + $5::bigint * INTERVAL '1 microsecond',
                TIMESTAMPTZ 'epoch' + $6::bigint * INTERVAL '1 microsecond')""",
    "queues": """
        INSERT INTO equeue_queues (name, paused, concurrency, rate_limit, rate_period, updated_at)
        VALUES ($1, $2, $3, $4, $5, TIMESTAMPTZ 'epoch' + $6::bigint * INTERVAL '1 microsecond')""",
    "schedules": """
        INSERT INTO equeue_schedules (name, cron, timezone, job_type, payload, last_tick,
                                      last_run_at, updated_at)
        VALUES ($1, $2, $3, $4, $5::jsonb,
                TIMESTAMPTZ 'epoch' + $6::bigint * INTERVAL '1 microsecond',
                TIMESTAMPTZ 'epoch' + $6::bigint * INTERVAL '1 microsecond',
                TIMESTAMPTZ 'epoch' + $7::bigint * INTERVAL '1 microsecond')""",
}
SQLITE_EXTRAS = {
    "workers": """
        INSERT INTO equeue_workers (id, hostname, pid, concurrency, started_at, last_beat_at)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6)""",
    "queues": """
        INSERT INTO equeue_queues (name, paused, concurrency, rate_limit, rate_period, updated_at)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6)""",
    "schedules": """
        INSERT INTO equeue_schedules (name, cron, timezone, job_type, payload, last_tick,
                                      last_run_at, updated_at)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)""",
}


# -- the server and the requests ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(url: str, log: Path) -> Iterator[str]:
    """uvicorn serving ``dashboard_app:app`` on ``url``'s database; its base URL once it answers."""
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PYTHONUNBUFFERED": "1",
        "EQUEUE_BENCH_DATABASE_URL": url,
    }
    command = [
        sys.executable, "-m", "uvicorn", "dashboard_app:app", "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the server exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                # uvicorn listens once the lifespan (migrations, the pool) has started.
                if httpx.get(f"{base}/docs", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(base: str, run: Run, repeat: int) -> None:
    """Every URL: the first request, ``WARMUP`` more, then ``repeat`` timed ones."""
    import httpx

    def get(http: httpx.Client, url: str) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = http.get(url)
        return (time.perf_counter() - started) * 1000, response

    with httpx.Client(base_url=base, timeout=120) as http:
        http.get(POOL_WARMUP_URL)
        for template in URLS:
            url = template.format(job_id=run.job_id)
            first, response = get(http, url)
            if response.status_code == 404:
                run.skipped[template] = "404 (not served yet)"
                continue
            if response.status_code != 200:
                run.skipped[template] = f"{response.status_code}: {response.text[:200]}"
                continue
            for _ in range(WARMUP):
                get(http, url)
            times = []
            for _ in range(repeat):
                ms, response = get(http, url)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code} after 200")
                times.append(ms)
            run.pages[template] = {
                "first_ms": first,
                "median_ms": statistics.median(times),
                "p95_ms": percentile(times, 95),
                "max_ms": max(times),
                "bytes": len(response.content),
                "content_type": response.headers.get("content-type", ""),
                "times_ms": times,
            }


# -- the report --------------------------------------------------------------------------------


def table(runs: list[Run]) -> str:
    """One markdown table: a row per URL, median / p95 / first (ms) per backend."""
    header = ["URL"]
    for run in runs:
        header += [f"{run.backend} median", f"{run.backend} p95", f"{run.backend} first"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for template in URLS:
        if not any(template in run.pages for run in runs):
            continue
        cells = [f"`{template}`"]
        for run in runs:
            page = run.pages.get(template)
            if page is None:
                cells += ["-", "-", "-"]
            else:
                cells += [f"{page[k]:.1f}" for k in ("median_ms", "p95_ms", "first_ms")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(runs: list[Run], repeat: int) -> str:
    lines = []
    for run in runs:
        how = (
            "reused"
            if run.reused
            else f"populated in {run.populate_seconds:.1f} s"
            if run.populate_seconds is not None
            else "?"
        )
        lines.append(f"- {run.backend}: {run.rows:,} jobs ({how})")
    lines.append(f"- {repeat} timed requests per URL after {WARMUP} warm-ups; ms, sequential")
    skipped: dict[str, list[str]] = {}
    for run in runs:
        for template, why in run.skipped.items():
            skipped.setdefault(f"{template}: {why}", []).append(run.backend)
    for what, backends in skipped.items():
        lines.append(f"- skipped `{what}` ({', '.join(backends)})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/dashboard.py",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)}"
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="jobs in the table (1,000,000)")
    p.add_argument("--repeat", type=int, default=20, help="timed requests per URL (20)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the databases, and reuse kept ones that hold --rows jobs",
    )
    p.add_argument(
        "--admin-url",
        default=os.environ.get(
            "EQUEUE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database on the server, where the run's own database is created",
    )
    p.add_argument("--json", type=Path, default=None, help="where to write the raw figures")
    args = p.parse_args(argv)
    args.backends = [x.strip() for x in args.backends.split(",") if x.strip()]
    if unknown := set(args.backends) - set(BACKENDS):
        p.error(f"unknown backends {sorted(unknown)}")
    if args.rows < 1000 or args.repeat < 1:
        p.error("--rows must be at least 1000 and --repeat at least 1")
    host = args.admin_url.split("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if "postgres" in args.backends and host not in ("127.0.0.1", "localhost", "[::1]"):
        p.error(f"the benchmark talks to a loopback server only, not {host!r}")
    if args.json is None and RESULTS.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        args.json = RESULTS / f"dashboard-{stamp}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _check_mix()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="equeue-dashboard-") as tmp:
        work = Path(tmp)
        for backend in args.backends:
            db = Postgres(args) if backend == "postgres" else SQLite(args, work)
            run = Run(backend)
            try:
                print(f"{backend}: preparing {args.rows:,} jobs ...", flush=True)
                asyncio.run(db.prepare(run))
                how = "reused" if run.reused else f"populated in {run.populate_seconds:.1f} s"
                print(f"{backend}: {run.rows:,} jobs, {how}; measuring ...", flush=True)
                with serve(db.url, work / f"{backend}-server.log") as base:
                    measure(base, run, args.repeat)
            finally:
                asyncio.run(db.cleanup())
            runs.append(run)
    print()
    print(table(runs))
    print()
    print(summary(runs, args.repeat))
    if args.json is not None:
        report = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "runs": [vars(run) for run in runs],
        }
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
