"""ThrowawayCluster: a private PostgreSQL server in a temp dir, which tests may stop, crash and
restart without disturbing the shared server the rest of the suite uses.
"""

import shutil
import subprocess
import uuid
from typing import Any, Literal

from tests.faults.harness import (
    HOST,
    SERVER_USER,
    ServerUser,
    asyncpg_dsn,
    asyncpg_url,
    environment,
    free_port,
    identifier,
    pg_bindir,
    psql,
    tail,
    wait_until,
)

StopMode = Literal["smart", "fast", "immediate"]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
QUERY_TIMEOUT = 30.0
# Settings for a disposable server: small memory, room for many test connections, and no fsync
# (safe while the machine stays up: an immediate stop or a killed server keeps every commit).
# synchronous_commit stays on, or a crash test would lose commits the client saw succeed.
SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "'16MB'",
    "max_connections": "200",
    "log_min_messages": "warning",
}


class ThrowawayCluster:
    """A PostgreSQL cluster of our own: ``initdb`` (trust auth, superuser ``postgres``) in a temp
    dir, served by ``pg_ctl`` on a free loopback port with its unix socket in that dir.

    ``start()`` creates it on first use; ``destroy()`` stops it and deletes the directory. The
    methods block (they run ``pg_ctl``/``psql``); from a test's event loop, call them through
    ``asyncio.to_thread`` if the loop must keep running meanwhile (e.g. a queue under test).
    """

    def __init__(self) -> None:
        self._bindir = pg_bindir()
        self._user = ServerUser.find()
        self.directory = self._user.make_directory("equeue-faults-pg-")
        self.data = self.directory / "data"
        self.server_log = self.directory / "server.log"
        self.commands_log = self.directory / "commands.log"
        self.port = free_port()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database: ``postgresql+asyncpg://postgres@…``."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this cluster."""
        return asyncpg_url(self.port, database)

    @property
    def dsn(self) -> str:
        """asyncpg DSN of the ``postgres`` database."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """asyncpg DSN of ``database`` on this cluster."""
        return asyncpg_dsn(self.port, database)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server (creating the cluster on first use) and wait until it accepts
        connections."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._pg_ctl("start", "-l", str(self.server_log), "-t", str(int(timeout)), timeout=timeout)
        self.wait_ready(timeout)

    def stop(self, mode: StopMode = "fast", timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server. ``fast`` disconnects sessions (they get ``admin_shutdown``) and
        checkpoints; ``immediate`` kills everything at once, like a crash (recovery on restart).
        """
        self._pg_ctl("stop", "-m", mode, "-t", str(int(timeout)), timeout=timeout)

    def restart(self, mode: StopMode = "fast", timeout: float = START_TIMEOUT) -> None:
        """Stop with ``mode``, start again on the same port, and wait until it is ready."""
        self._pg_ctl(
            "restart",
            "-m",
            mode,
            "-l",
            str(self.server_log),
            "-t",
            str(int(timeout)),
            timeout=timeout,
        )
        self.wait_ready(timeout)

    def is_running(self) -> bool:
        """Whether the server process is alive (``pg_ctl status``)."""
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._succeeds(
            [str(self._bindir / "pg_ctl"), "status", "-D", str(self.data)],
            cwd=self.directory,
            **self._user.popen_options(),
        )

    def is_ready(self) -> bool:
        """Whether the server accepts connections on its TCP port right now."""
        return self._succeeds(
            [str(self._bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port), "-t", "1"]
        )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server accepts connections; ``TimeoutError`` (with its log) if not."""
        try:
            wait_until(self.is_ready, timeout=timeout, what=f"PostgreSQL on port {self.port}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def ensure_running(self) -> None:
        """Start the server if a test left it stopped (fixtures call this at teardown)."""
        if not self.is_running():
            self.start()
        else:
            self.wait_ready()

    def destroy(self) -> None:
        """Stop the server at once if it runs, and delete the cluster's directory."""
        try:
            if self.is_running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self) -> str:
        """The end of the server's and of ``pg_ctl``'s logs, for failure messages."""
        return (
            f"--- PostgreSQL log ---\n{tail(self.server_log)}\n"
            f"--- pg_ctl/initdb output ---\n{tail(self.commands_log)}"
        )

    # -- SQL -------------------------------------------------------------------------------------

    def execute(self, sql: str, *, database: str = "postgres", **variables: str) -> list[str]:
        """Run ``sql`` through ``psql`` as ``postgres``; its output rows (``|``-separated).

        ``variables`` are psql variables: ``:'name'`` in ``sql`` quotes one as a literal.
        """
        options = [
            option for name, value in variables.items() for option in ("-v", f"{name}={value}")
        ]
        return psql(
            self.port, database, "-v", "ON_ERROR_STOP=1", *options, stdin=sql, timeout=QUERY_TIMEOUT
        )

    def create_database(self, name: str | None = None) -> str:
        """Create a database (by default ``faults_<random>``); its SQLAlchemy URL."""
        name = identifier(name or f"faults_{uuid.uuid4().hex[:12]}")
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its sessions."""
        self.execute(f'DROP DATABASE IF EXISTS "{identifier(name)}" WITH (FORCE)')

    def terminate_sessions(self, database: str) -> int:
        """``pg_terminate_backend`` every session on ``database`` but psql's own; how many."""
        rows = self.execute(
            """
            SELECT count(pg_terminate_backend(pid))
            FROM pg_stat_activity
            WHERE datname = :'target' AND pid <> pg_backend_pid();
            """,
            target=database,
        )
        return int(rows[0])

    # -- internals -------------------------------------------------------------------------------

    def _initdb(self) -> None:
        self._user.run(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SERVER_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=self.directory,
            log=self.commands_log,
            timeout=START_TIMEOUT,
        )
        settings = {
            **SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# tests/faults\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _succeeds(self, command: list[str], **options: Any) -> bool:
        """Whether ``command`` exits with 0 (its output discarded)."""
        completed = subprocess.run(
            command,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=QUERY_TIMEOUT,
            check=False,
            **options,
        )
        return completed.returncode == 0

    def _pg_ctl(self, action: str, *options: str, timeout: float) -> None:
        try:
            self._user.run(
                [str(self._bindir / "pg_ctl"), action, "-D", str(self.data), "-w", *options],
                cwd=self.directory,
                log=self.commands_log,
                # pg_ctl enforces its own -t; this bound only catches a hung pg_ctl.
                timeout=timeout + 10,
            )
        except RuntimeError as exc:
            raise RuntimeError(f"pg_ctl {action} failed: {exc}\n{self.log_tail()}") from None
