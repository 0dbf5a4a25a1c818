"""The driver's plumbing: PostgreSQL administration, the per-library virtualenvs, adapter
subprocesses and worker processes (CPU from wait4, peak RSS from /proc/<pid>/status VmHWM)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from libraries import OURS, Library
from psycopg import sql

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
ADAPTERS = BENCH / "adapters"
STOP_WAIT = 30.0


class BenchError(RuntimeError):
    """A measurement failed; the message says which and why."""


# -- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class Server:
    """The PostgreSQL server, through its admin database (``postgresql://...@127.0.0.1/test``)."""

    admin_dsn: str
    created: set[str] = field(default_factory=set)

    def dsn(self, database: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{database}"

    def admin(self, statement: sql.Composable | str, params: Any = None) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def create(self, prefix: str, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); its name."""
        name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        self.admin(statement)
        self.created.add(name)
        return name

    def drop(self, name: str) -> None:
        self.admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.discard(name)

    def drop_all(self) -> None:
        for name in sorted(self.created):
            try:
                self.drop(name)
            except psycopg.Error as exc:
                print(f"warning: could not drop {name}: {exc}", file=sys.stderr)

    def execute(self, database: str, statement: str, params: Any = None) -> None:
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(statement, params)

    def scalar(self, database: str, query: str) -> Any:
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            row = conn.execute(query).fetchone()
        return row[0] if row else None

    def vacuum_analyze(self, database: str, tables: tuple[str, ...]) -> None:
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            for table in tables:
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))

    def facts(self) -> dict[str, str]:
        """The server's version and the settings that matter for a write-heavy queue."""
        names = (
            "shared_buffers", "synchronous_commit", "fsync", "wal_sync_method",
            "full_page_writes", "wal_buffers", "max_wal_size", "checkpoint_timeout", "work_mem",
            "commit_delay", "autovacuum", "jit", "max_connections",
        )  # fmt: skip
        facts: dict[str, str] = {}
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            facts["server_version"] = str(row[0]) if row else "?"
            for name in names:
                row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                facts[name] = str(row[0]) if row else "?"
        return facts


def postgres_cpu_seconds() -> float:
    """utime + stime of every ``postgres`` process now alive (the server's CPU so far)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm_end = stat.rfind(")")
        if stat[stat.find("(") + 1 : comm_end] != "postgres":
            continue
        fields = stat[comm_end + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


# -- virtualenvs -------------------------------------------------------------------------------


def find_python(version: str, override: str | None) -> str | None:
    """A working interpreter of ``version`` (``3.11``, ``3.12``), or None.

    Candidates that do not run (a pyenv shim without that version selected) are skipped.
    """
    candidates: list[str | None] = [override]
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        candidates.append(sys.executable)
    candidates.append(shutil.which(f"python{version}"))
    candidates += [
        str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python"))
    ]
    candidates += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        check = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check.returncode == 0 and check.stdout.strip() == version:
            return candidate
    return None


def venv_python(lib: Library) -> Path:
    return VENVS / lib.key / "bin" / "python"


def pip(python: Path, *args: str) -> None:
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"pip install {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def ensure_venv(lib: Library, interpreter: str, reinstall_ours: bool) -> None:
    """Create ``bench/.venvs/<key>`` with the library's pinned requirements, unless it exists
    with the same ones; fastapi_equeue is reinstalled from the working tree every run."""
    folder = VENVS / lib.key
    marker = folder / "bench-requirements.json"
    wanted = json.dumps({"python": lib.python, "requirements": lib.requirements})
    if not (marker.exists() and marker.read_text() == wanted and venv_python(lib).exists()):
        shutil.rmtree(folder, ignore_errors=True)
        print(f"creating {folder.relative_to(REPO)} (Python {lib.python})", flush=True)
        subprocess.run([interpreter, "-m", "venv", str(folder)], check=True, timeout=300)
        requirements = list(lib.requirements)
        if lib.name == OURS:
            requirements.insert(0, f"{REPO}[postgres]")
        pip(venv_python(lib), *requirements)
        marker.write_text(wanted)
    elif lib.name == OURS and reinstall_ours:
        pip(venv_python(lib), "--no-deps", "--force-reinstall", str(REPO))


def versions(lib: Library) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys; "
        f"d = {list(lib.distributions)!r}; "
        "print(json.dumps({'python': sys.version.split()[0], "
        "**{n: m.version(n) for n in d}}))"
    )
    out = subprocess.run(
        [str(venv_python(lib)), "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


# -- adapters and workers ----------------------------------------------------------------------


def adapter_command(lib: Library, command: str, dsn: str, *options: str) -> list[str]:
    script = ADAPTERS / f"{lib.key}_adapter.py"
    return [str(venv_python(lib)), str(script), command, "--dsn", dsn, *options]


def run_adapter(
    lib: Library, command: str, dsn: str, *options: str, timeout: float
) -> dict[str, Any]:
    """Run one adapter command to its end; its JSON answer."""
    argv = adapter_command(lib, command, dsn, *options)
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=ADAPTERS, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{lib.name} {command} took longer than {timeout:.0f}s") from None
    if result.returncode != 0:
        raise BenchError(
            f"{lib.name} {command} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise BenchError(f"{lib.name} {command} printed no result:\n{result.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


@dataclass
class Worker:
    """A worker process of one library, started by ``spawn``."""

    lib: Library
    process: subprocess.Popen[bytes]
    run_dir: Path
    cpu: float | None = None

    @property
    def log(self) -> Path:
        return self.run_dir / "worker.log"

    def alive(self) -> bool:
        if self.process.returncode is not None:
            return False
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime
        return False

    def peak_rss_mib(self) -> float:
        """VmHWM from /proc (``ru_maxrss`` would count the forked parent's pre-exec pages)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise BenchError("no VmHWM in /proc/<pid>/status")

    def t0(self) -> float:
        return float((self.run_dir / "t0").read_text())

    def wait_t0(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not (self.run_dir / "t0").exists():
            if not self.alive():
                raise BenchError(f"{self.lib.name} worker died on start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.lib.name} worker never started:\n{self.tail()}")
            time.sleep(0.02)
        return self.t0()

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; reaps the process with wait4 for its CPU."""
        if self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() > deadline:
                self.process.kill()
                pid, status, usage = os.wait4(self.process.pid, 0)
                break
            time.sleep(0.02)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime


def spawn(lib: Library, dsn: str, run_dir: Path, *options: str, command: str = "worker") -> Worker:
    """Start a long-running adapter process (a worker, or the mixed run's web server)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("t0", "exec", "latency"):
        (run_dir / stale).unlink(missing_ok=True)
    argv = adapter_command(lib, command, dsn, "--run-dir", str(run_dir), *options)
    with (run_dir / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=ADAPTERS, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    return Worker(lib, process, run_dir)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def wait_file(path: Path, workers: list[Worker], timeout: float) -> Any:
    """The JSON in ``path`` once a worker has written it."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        for worker in workers:
            if not worker.alive():
                raise BenchError(f"{worker.lib.name} worker exited early:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{path.name} was not written within {timeout:.0f}s")
        time.sleep(0.02)
    return read_json(path)
