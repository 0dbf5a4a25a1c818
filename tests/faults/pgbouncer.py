"""PgBouncer: Debian's ``pgbouncer`` on a free loopback port in front of a PostgreSQL server, in
transaction pooling mode by default, the mode that breaks session state (prepared statements,
``SET``, advisory locks, ``LISTEN``) between transactions.
"""

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from tests.faults.harness import (
    HOST,
    SERVER_USER,
    Background,
    ServerUser,
    accepts_tcp,
    asyncpg_dsn,
    asyncpg_url,
    environment,
    free_port,
    pgbouncer_binary,
    psql,
    tail,
    wait_until,
)

PoolMode = Literal["session", "transaction", "statement"]

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
ADMIN_TIMEOUT = 10.0
ADMIN_DATABASE = "pgbouncer"
DEFAULTS = {
    "max_client_conn": "500",
    "default_pool_size": "20",
    # asyncpg and libpq may send these at startup; PgBouncer refuses unknown ones otherwise.
    "ignore_startup_parameters": "extra_float_digits,options",
    # After a failed server login PgBouncer waits this long before trying again (default 15 s):
    # short, so a pool recovers soon after a restarted server is back.
    "server_login_retry": "1",
}


class PgBouncer(Background):
    """One ``pgbouncer`` process forwarding every database name to ``server_host:server_port``.

    Auth is ``trust`` (the user must still appear in the generated ``auth_file``), and
    ``postgres`` may use the admin console (database ``pgbouncer``) through :meth:`admin`.
    ``settings`` override or add ``[pgbouncer]`` settings (e.g. ``server_login_retry``).
    Use as a context manager, or ``start()`` then ``stop()``.
    """

    def __init__(
        self,
        server_port: int,
        *,
        server_host: str = HOST,
        pool_mode: PoolMode = "transaction",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._binary = pgbouncer_binary()
        self._user = ServerUser.find()
        self.server_host = server_host
        self.server_port = server_port
        self.pool_mode = pool_mode
        self.settings = {**DEFAULTS, **(settings or {})}
        self.port = free_port()
        self.directory: Path | None = None
        self.log: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` through the pooler.

        In transaction mode asyncpg's named prepared statements break; clients need
        ``statement_cache_size=0`` (SQLAlchemy: ``prepared_statement_cache_size=0`` too).
        """
        return asyncpg_url(self.port, database)

    def dsn_for(self, database: str) -> str:
        """asyncpg DSN of ``database`` through the pooler."""
        return asyncpg_dsn(self.port, database)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Write the config, start ``pgbouncer`` and wait until it accepts connections."""
        if self._process is not None:
            raise RuntimeError("pgbouncer already started")
        self.directory = self._user.make_directory("equeue-faults-pgbouncer-")
        self.log = self.directory / "pgbouncer.log"

        def listening() -> bool:
            if not self.is_running():
                raise RuntimeError(f"pgbouncer exited at startup:\n{self.log_tail()}")
            return accepts_tcp(self.port)

        try:
            config = self._write_config(self.directory)
            with self.log.open("wb") as out:
                self._process = subprocess.Popen(
                    [str(self._binary), str(config)],
                    cwd=self.directory,
                    env=environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    **self._user.popen_options(),
                )
            wait_until(listening, timeout=timeout, what=f"pgbouncer on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut ``pgbouncer`` down at once (SIGTERM, then SIGKILL) and delete its directory."""
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                # SIGTERM is PgBouncer's immediate shutdown; SIGINT would wait for clients.
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    # SIGKILL cannot be ignored; the bound only keeps a stuck kernel from hanging.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout)
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    def admin(self, command: str) -> list[list[str]]:
        """Run one admin console command (``SHOW POOLS``, ``PAUSE``, ``RESUME``, ``KILL db``,
        ``RECONNECT``…) through ``psql``; its rows as lists of strings.

        The console speaks only the simple query protocol, which asyncpg cannot read rows from.
        """
        try:
            lines = psql(self.port, ADMIN_DATABASE, "-c", command, timeout=ADMIN_TIMEOUT)
        except RuntimeError as exc:
            raise RuntimeError(f"pgbouncer admin {command!r}: {exc}") from None
        return [line.split("|") for line in lines]

    def config(self) -> dict[str, str]:
        """The running settings, from the admin console's ``SHOW CONFIG``."""
        return {row[0]: row[1] for row in self.admin("SHOW CONFIG")}

    def log_tail(self) -> str:
        """The end of PgBouncer's log, for failure messages."""
        return f"--- pgbouncer log ---\n{tail(self.log) if self.log else '(not started)'}"

    def _write_config(self, directory: Path) -> Path:
        auth_file = directory / "userlist.txt"
        # With auth_type = trust no password is checked, but the user must be listed.
        auth_file.write_text(f'"{SERVER_USER}" ""\n', encoding="utf-8")
        settings = {
            "listen_addr": HOST,
            "listen_port": str(self.port),
            # No unix socket: the pooler is reached over TCP only.
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(auth_file),
            "admin_users": SERVER_USER,
            "pool_mode": self.pool_mode,
            "logfile": "",
            "pidfile": "",
            **self.settings,
        }
        config = directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            # The fallback entry: every database name maps to the same name on the server.
            f"* = host={self.server_host} port={self.server_port}\n"
            "\n[pgbouncer]\n" + "".join(f"{name} = {value}\n" for name, value in settings.items()),
            encoding="utf-8",
        )
        return config
