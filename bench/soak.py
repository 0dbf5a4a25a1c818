"""A soak run: the REST API under a steady load of mixed jobs for minutes, watching memory and
database connections. Not a test: it prints a table and writes a JSON report.

Run it with ``python bench/soak.py [--minutes 20] [--rate 200] [--output soak.json]``. It creates
a fresh PostgreSQL database on ``--admin-url`` (dropped at the end unless ``--keep-database``),
then starts:

- the app, ``uvicorn soak:app`` (one process): ``FastAPI(lifespan=queue.lifespan)`` with
  ``equeue.router`` and in-process workers (``--server-concurrency``);
- one standalone worker, ``python -m fastapi_equeue.worker soak:queue``
  (``--worker-concurrency``).

The driver posts ``--rate`` jobs a second to ``POST /jobs`` for ``--minutes``, a mix of outcomes:
most complete (``work``, a few ms), some fail and retry (``flaky``: each attempt fails with
probability one half, three attempts, so most end completed after a retry and some fail), some
time out (``slow``: longer than its timeout, two attempts, so it ends failed), and some are
cancelled through ``POST /jobs/{id}/cancel`` shortly after they are enqueued (``long``: queued or
already running when the cancel lands).

Every 10 s it samples the resident memory (``VmRSS``) of the server and the worker, the
connections that ``pg_stat_activity`` shows on the database (the sampler's own left out), and
the jobs per status. At the end it waits for the queue to drain and reports: each process's RSS
after the warm-up, at the end and at its peak; the connections' minimum and maximum; the jobs
by final status; whatever is left unfinished (nothing should be); the achieved rate.

The same file is the app and the worker's queue: imported by uvicorn or by the worker, it builds
them from ``SOAK_DATABASE_URL`` on first access (PEP 562) and imports nothing of the driver's.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SAMPLE_EVERY = 10.0
UNFINISHED = ("queued", "retrying", "processing")
# The mix, as shares of the jobs posted: (job_type, share).
MIX = (("work", 0.85), ("flaky", 0.07), ("slow", 0.03), ("long", 0.05))


# -- the app and the worker's queue (built in the server and the worker processes) ----------------


def build_queue(database_url: str, concurrency: int) -> Any:
    import fastapi_equeue as equeue

    queue = equeue.EQueue(database_url, concurrency=concurrency)

    @queue.task
    async def work(ms: float) -> dict[str, float]:
        await asyncio.sleep(ms / 1000)
        return {"slept_ms": ms}

    @queue.task(max_attempts=3, retry_delay=0.5)
    async def flaky(ms: float) -> dict[str, float]:
        await asyncio.sleep(ms / 1000)
        if random.random() < 0.5:
            raise RuntimeError("flaky: this attempt fails; the job retries")
        return {"slept_ms": ms}

    @queue.task(max_attempts=2, timeout=0.2, retry_delay=0.5)
    async def slow(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @queue.task
    async def long(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return queue


def _from_env(name: str) -> Any:
    url = os.environ["SOAK_DATABASE_URL"]
    concurrency = int(os.environ.get("SOAK_CONCURRENCY", "10"))
    if name == "queue":
        return build_queue(url, concurrency)
    from fastapi import FastAPI

    import fastapi_equeue as equeue

    queue = build_queue(url, concurrency)
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    return app


def __getattr__(name: str) -> Any:
    # PEP 562: ``soak:app`` (uvicorn) and ``soak:queue`` (the worker) are built on first access.
    if name not in ("app", "queue"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _from_env(name)
    globals()[name] = value
    return value


# -- the driver ------------------------------------------------------------------------------------


class Response:
    """What the driver reads of an HTTP answer."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class LeanHttp:
    """A small HTTP/1.1 client on keep-alive connections to one server.

    httpx costs about 4 ms of CPU per request here, which on a 2-core machine makes the driver,
    not the server, the bottleneck well below 200 requests a second. This speaks just what the
    driver needs: GET and POST with a JSON body, answers with a Content-Length.
    """

    def __init__(self, port: int, connections: int = 64) -> None:
        self._port = port
        self._free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = (
            asyncio.Queue()
        )
        for _ in range(connections):
            self._free.put_nowait(None)

    async def get(self, path: str) -> Response:
        return await self._request("GET", path, None)

    async def post(self, path: str, json: Any = None) -> Response:
        return await self._request("POST", path, json)

    async def aclose(self) -> None:
        while not self._free.empty():
            stream = self._free.get_nowait()
            if stream is not None:
                stream[1].close()

    async def _request(self, method: str, path: str, body: Any) -> Response:
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        stream = await self._free.get()
        try:
            if stream is None:
                stream = await asyncio.open_connection("127.0.0.1", self._port)
            reader, writer = stream
            writer.write(head + data)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            content = await reader.readexactly(length)
        except BaseException:
            if stream is not None:
                stream[1].close()
            self._free.put_nowait(None)
            raise
        self._free.put_nowait(stream)
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        return Response(int(status_line.split()[1]), content)


def rss_kib(pid: int) -> int | None:
    """A process's resident memory in KiB (``VmRSS``), or ``None`` once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Soak:
    """One run: the database, the processes, the load, the samples."""

    def __init__(self, args: argparse.Namespace, logs: Path) -> None:
        from sqlalchemy.engine import make_url

        self.args = args
        self.logs = logs
        self.rng = random.Random(args.seed)
        self.admin = make_url(args.admin_url)
        self.database = f"equeue_soak_{uuid.uuid4().hex[:10]}"
        self.url = self.admin.set(drivername="postgresql+asyncpg", database=self.database)
        self.dsn = self.admin.set(drivername="postgresql", database=self.database)
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.samples: list[dict[str, Any]] = []
        self.posted: dict[str, int] = dict.fromkeys((name for name, _ in MIX), 0)
        self.post_errors: list[str] = []
        self.cancels = {"ok": 0, "conflict": 0, "error": 0}
        self.pending: set[asyncio.Task[None]] = set()
        self.shed = 0

    def _dsn(self, url: Any) -> str:
        return str(url.set(drivername="postgresql").render_as_string(hide_password=False))

    async def admin_execute(self, statement: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn(self.admin), timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def spawn(self, name: str, command: list[str], concurrency: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONUNBUFFERED": "1",
            "SOAK_DATABASE_URL": self.url.render_as_string(hide_password=False),
            "SOAK_CONCURRENCY": str(concurrency),
        }
        with (self.logs / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=self.logs,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")

    async def start(self, http: Any) -> None:
        await self.admin_execute(f'CREATE DATABASE "{self.database}"')
        port = str(self.port)
        self.spawn(
            "server",
            [sys.executable, "-m", "uvicorn", "soak:app", "--host", "127.0.0.1", "--port", port,
             "--no-access-log"],
            self.args.server_concurrency,
        )  # fmt: skip
        # The server migrates first; the worker starts on the migrated schema.
        deadline = time.monotonic() + 60
        while True:
            self.check_alive()
            with contextlib.suppress(Exception):
                if (await http.get("/jobs/stats")).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer within 60 s")
            await asyncio.sleep(0.2)
        self.spawn(
            "worker",
            [sys.executable, "-m", "fastapi_equeue.worker", "soak:queue"],
            self.args.worker_concurrency,
        )
        deadline = time.monotonic() + 60
        while "worker running" not in (self.logs / "worker.log").read_text(errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start within 60 s")
            await asyncio.sleep(0.2)

    def job_body(self) -> tuple[str, dict[str, Any]]:
        job_type = self.rng.choices([n for n, _ in MIX], weights=[w for _, w in MIX])[0]
        if job_type in ("work", "flaky"):
            return job_type, {"ms": round(self.rng.uniform(1, 10), 2)}
        if job_type == "slow":
            return job_type, {"seconds": 2.0}
        return job_type, {"seconds": 5.0}

    async def post_one(self, http: Any) -> None:
        job_type, payload = self.job_body()
        try:
            response = await http.post("/jobs", json={"job_type": job_type, "payload": payload})
        except Exception as exc:
            self.post_errors.append(f"{type(exc).__name__}: {exc}")
            return
        if response.status_code != 201:
            self.post_errors.append(f"{response.status_code}: {response.text[:200]}")
            return
        self.posted[job_type] += 1
        if job_type == "long":
            # Cancel it shortly: still queued, or already running in a worker.
            await asyncio.sleep(self.rng.uniform(0.05, 1.0))
            job_id = response.json()["id"]
            try:
                cancelled = await http.post(f"/jobs/{job_id}/cancel")
            except Exception:
                self.cancels["error"] += 1
                return
            key = {200: "ok", 409: "conflict"}.get(cancelled.status_code, "error")
            self.cancels[key] += 1

    async def drive(self, http: Any) -> float:
        """Post ``rate`` jobs a second for ``minutes``, paced by the clock; the seconds spent."""
        loop = asyncio.get_running_loop()
        begin = loop.time()
        end = begin + self.args.minutes * 60
        tick = 0.05
        per_tick = self.args.rate * tick
        owed = 0.0
        n = 0
        while (now := loop.time()) < end:
            n += 1
            await asyncio.sleep(max(0.0, begin + n * tick - now))
            owed += per_tick
            while owed >= 1:
                owed -= 1
                if len(self.pending) >= self.args.max_in_flight:
                    # The server is behind: an open-loop driver would pile up requests without
                    # end; this one sheds them and says how many.
                    self.shed += 1
                    continue
                task = asyncio.create_task(self.post_one(http))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
        await asyncio.gather(*self.pending)
        return loop.time() - begin

    async def sample(self, conn: Any, started: float) -> dict[str, Any]:
        self.check_alive()
        connections = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        rows = await conn.fetch("SELECT status, count(*) AS n FROM equeue_jobs GROUP BY status")
        sample = {
            "t": round(time.monotonic() - started, 1),
            "rss_kib": {name: rss_kib(p.pid) for name, p in self.processes.items()},
            "connections": connections,
            "jobs": {row["status"]: row["n"] for row in rows},
        }
        self.samples.append(sample)
        print(
            f"  t={sample['t']:>6}s  rss server {sample['rss_kib']['server']} KiB, "
            f"worker {sample['rss_kib']['worker']} KiB; connections {connections}; "
            f"jobs {sample['jobs']}",
            flush=True,
        )
        return sample

    async def sampler(self, conn: Any, started: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample(conn, started)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAMPLE_EVERY):
                    await stop.wait()

    async def run(self) -> dict[str, Any]:
        import asyncpg

        http = LeanHttp(self.port)
        try:
            await self.start(http)
            conn = await asyncpg.connect(self._dsn(self.dsn), timeout=10)
            try:
                started = time.monotonic()
                stop = asyncio.Event()
                sampling = asyncio.create_task(self.sampler(conn, started, stop))
                driven = await self.drive(http)
                drive_end = time.monotonic()
                # Drain: nothing left queued, retrying or processing.
                deadline = drive_end + self.args.drain_timeout
                while True:
                    self.check_alive()
                    left = await conn.fetchval(
                        "SELECT count(*) FROM equeue_jobs WHERE status = ANY($1::text[])",
                        list(UNFINISHED),
                    )
                    if left == 0 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                drained_in = time.monotonic() - drive_end
                stop.set()
                await sampling
                final = await self.sample(conn, started)
                first_finished, last_finished = await conn.fetchrow(
                    "SELECT min(finished_at), max(finished_at) FROM equeue_jobs"
                )
            finally:
                await conn.close()
        finally:
            await http.aclose()
        return self.report(driven, drained_in, final, first_finished, last_finished)

    def report(
        self, driven: float, drained_in: float, final: dict[str, Any], first: Any, last: Any
    ) -> dict[str, Any]:
        warm = [s for s in self.samples if s["t"] >= self.args.warmup] or self.samples
        memory = {}
        for name in self.processes:
            values = [s["rss_kib"][name] for s in self.samples if s["rss_kib"][name] is not None]
            after = [s["rss_kib"][name] for s in warm if s["rss_kib"][name] is not None]
            memory[name] = {
                "start_kib": after[0],
                "end_kib": after[-1],
                "max_kib": max(values),
                "growth_kib": after[-1] - after[0],
            }
        connections = [s["connections"] for s in self.samples]
        posted = sum(self.posted.values())
        unfinished = {k: v for k, v in final["jobs"].items() if k in UNFINISHED}
        return {
            "minutes": self.args.minutes,
            "target_rate": self.args.rate,
            "achieved_rate": round(posted / driven, 1),
            "posted": posted,
            "posted_by_type": self.posted,
            "post_errors": len(self.post_errors),
            "shed": self.shed,
            "post_error_examples": self.post_errors[:5],
            "cancels": self.cancels,
            "drained_in_seconds": round(drained_in, 1),
            "processing_rate": round(
                final["jobs"].get("completed", 0) / (last - first).total_seconds(), 1
            )
            if first and last and last > first
            else None,
            "jobs_by_status": final["jobs"],
            "unfinished": unfinished,
            "rss": memory,
            "connections": {"min": min(connections), "max": max(connections)},
            "warmup_seconds": self.args.warmup,
            "samples": self.samples,
            "database": self.database,
            "logs": str(self.logs),
        }

    def stop(self) -> dict[str, int | None]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait(10)
        return codes


def print_table(report: dict[str, Any]) -> None:
    print()
    print(f"soak: {report['minutes']} min at {report['target_rate']}/s target")
    print(f"  achieved rate       {report['achieved_rate']} jobs/s ({report['posted']} posted, "
          f"{report['post_errors']} errors, {report['shed']} shed: server behind)")  # fmt: skip
    print(f"  processing rate     {report['processing_rate']} jobs/s (completed, first to last)")
    print(f"  drained in          {report['drained_in_seconds']} s after the load")
    print(f"  jobs by status      {report['jobs_by_status']}")
    print(f"  left unfinished     {report['unfinished'] or 'none'}")
    print(f"  cancels             {report['cancels']}")
    print(
        f"  connections         min {report['connections']['min']}, "
        f"max {report['connections']['max']}"
    )
    print(f"  {'RSS (MiB)':<20}{'start':>8}{'end':>8}{'max':>8}{'growth':>8}")
    for name, m in report["rss"].items():
        print(
            f"  {name:<20}{m['start_kib'] / 1024:>8.1f}{m['end_kib'] / 1024:>8.1f}"
            f"{m['max_kib'] / 1024:>8.1f}{m['growth_kib'] / 1024:>+8.1f}"
        )
    print(f"  exit codes          {report.get('exit_codes')}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/soak.py",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=20.0, help="how long to drive load (20)")
    p.add_argument("--rate", type=float, default=200.0, help="jobs posted per second (200)")
    p.add_argument("--output", type=Path, default=Path("soak.json"), help="the JSON report")
    p.add_argument(
        "--admin-url",
        default=os.environ.get(
            "EQUEUE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database on the server, where the run's own database is created",
    )
    p.add_argument("--server-concurrency", type=int, default=20)
    p.add_argument("--worker-concurrency", type=int, default=20)
    p.add_argument(
        "--warmup", type=float, default=30.0, help="seconds before the 'start' RSS sample (30)"
    )
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=256,
        help="requests outstanding at most; beyond, the driver sheds load and counts it (256)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-database", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="equeue-soak-"))
    soak = Soak(args, logs)
    try:
        report = asyncio.run(soak.run())
    finally:
        codes = soak.stop()
        if not args.keep_database:
            with contextlib.suppress(Exception):
                asyncio.run(
                    soak.admin_execute(f'DROP DATABASE IF EXISTS "{soak.database}" WITH (FORCE)')
                )
    report["exit_codes"] = codes
    args.output.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print_table(report)
    print(f"  report              {args.output}; logs in {logs}")
    return 0 if not report["unfinished"] else 1


if __name__ == "__main__":
    sys.exit(main())
