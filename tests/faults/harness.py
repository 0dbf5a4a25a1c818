"""What the fault harness needs from the machine: the PostgreSQL and PgBouncer binaries, running
them as the ``postgres`` OS user when the tests run as root, ``psql``, free loopback ports, the
URLs of databases behind them, polling a condition with a deadline, and the ``with`` block that
starts and stops a helper (PgBouncer, the TCP proxy).
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import make_url

HOST = "127.0.0.1"
POLL = 0.05
# PostgreSQL refuses to run as root, and so does PgBouncer: as root, they run as this OS user.
SERVER_USER = "postgres"
# Debian installs each major version side by side here; the newest one wins.
DEBIAN_PG_BINDIRS = "/usr/lib/postgresql/*/bin"
PG_BINDIR_VARIABLE = "EQUEUE_PG_BINDIR"
PGBOUNCER_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class HarnessUnavailable(RuntimeError):
    """A binary or OS user the harness needs is missing: the tests that need it skip."""


def pg_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``psql``: ``$EQUEUE_PG_BINDIR``, else
    the one on ``PATH``, else Debian's newest ``/usr/lib/postgresql/N/bin``."""
    if configured := os.environ.get(PG_BINDIR_VARIABLE):
        candidates = [Path(configured)]
    else:
        on_path = shutil.which("initdb")
        debian = sorted(
            Path("/").glob(DEBIAN_PG_BINDIRS.lstrip("/")),
            key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
            reverse=True,
        )
        candidates = [*([Path(on_path).parent] if on_path else []), *debian]
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "pg_isready", "psql")):
            return bindir
    raise HarnessUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found in {DEBIAN_PG_BINDIRS} or on "
        f"PATH; install postgresql or set {PG_BINDIR_VARIABLE}"
    )


def pgbouncer_binary() -> Path:
    """The ``pgbouncer`` executable (Debian puts it in ``/usr/sbin``, off a user's ``PATH``)."""
    found = shutil.which("pgbouncer")
    candidates = [*([found] if found else []), *PGBOUNCER_CANDIDATES]
    for candidate in map(Path, candidates):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise HarnessUnavailable("pgbouncer not found; install it (apt-get install pgbouncer)")


@dataclass(frozen=True, slots=True)
class ServerUser:
    """The OS user the servers run as: ``postgres`` when we are root, else ourselves."""

    uid: int
    gid: int

    @classmethod
    def find(cls) -> "ServerUser":
        if os.geteuid() != 0:
            return cls(os.geteuid(), os.getegid())
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise HarnessUnavailable(
                f"running as root, and there is no {SERVER_USER!r} OS user to run servers as"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid)

    def popen_options(self) -> dict[str, Any]:
        """Keyword arguments for ``subprocess`` that run the child as this user."""
        if os.geteuid() != 0:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def make_directory(self, prefix: str) -> Path:
        """A new private directory in the system temp dir, owned by this user.

        Not under pytest's ``tmp_path``: as root, that sits in a directory the server user
        cannot enter.
        """
        path = Path(tempfile.mkdtemp(prefix=prefix))
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)
        return path

    def run(
        self, command: list[str], *, cwd: Path, log: Path, timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` as this user, appending its output to ``log``; raise if it fails.

        The output goes to a file, not a pipe: ``pg_ctl start`` leaves the server running with
        the inherited descriptors, and reading a pipe would wait for the server to exit.
        """
        with log.open("ab") as out:
            completed = subprocess.run(
                command,
                cwd=cwd,
                env=environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **self.popen_options(),
            )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} exited with {completed.returncode}:\n{tail(log)}"
            )
        return completed


def tail(path: Path, limit: int = 4000) -> str:
    """The end of a log file, for failure messages."""
    if not path.exists():
        return f"({path} does not exist)"
    return path.read_text(encoding="utf-8", errors="replace")[-limit:]


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now.

    The port is only free when this returns; servers bind it moments later, which is racy in
    theory and fine on a test machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def accepts_tcp(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback ``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=POLL * 4):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; raise ``TimeoutError`` after ``timeout``
    seconds naming ``what`` was awaited. Blocking: from async code, use ``asyncio.to_thread``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def identifier(name: str) -> str:
    """``name`` if it is a plain lowercase SQL identifier (safe to quote into DDL); else raise."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain lowercase identifier: {name!r}")
    return name


def asyncpg_url(port: int, database: str, *, user: str = SERVER_USER) -> str:
    """A SQLAlchemy URL for ``database`` on the loopback ``port``, driven by asyncpg."""
    return f"postgresql+asyncpg://{user}@{HOST}:{port}/{database}"


def asyncpg_dsn(port: int, database: str) -> str:
    """An asyncpg DSN for ``database`` on the loopback ``port``, as ``postgres``."""
    return f"postgresql://{SERVER_USER}@{HOST}:{port}/{database}"


def database_of(url: str) -> str:
    """The database name of a SQLAlchemy URL (which must name one)."""
    database = make_url(url).database
    assert database
    return database


def psql(
    port: int, database: str, *options: str, stdin: str | None = None, timeout: float
) -> list[str]:
    """Run ``psql`` as ``postgres`` on ``database`` at the loopback ``port``, unaligned and
    tuples only, with ``options`` (``-c command``, ``-v name=value``…) and ``stdin`` as its
    input; its non-empty output lines. Raises ``RuntimeError`` (with psql's stderr) if it fails.
    """
    command = [
        str(pg_bindir() / "psql"),
        "-X",
        "-q",
        "-A",
        "-t",
        "-h",
        HOST,
        "-p",
        str(port),
        "-U",
        SERVER_USER,
        "-d",
        database,
        *options,
    ]
    completed = subprocess.run(
        command,
        input=stdin,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"psql failed ({completed.returncode}): {completed.stderr.strip()}")
    return [line for line in completed.stdout.splitlines() if line]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for server and client binaries: ours, without libpq variables that would
    redirect them elsewhere, plus ``extra``."""
    kept = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    return {**kept, "LC_ALL": "C", **(extra or {})}


class Background(ABC):
    """A helper that runs beside the tests (a process, a thread): ``start()`` and ``stop()``, or
    a ``with`` block that does both."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
