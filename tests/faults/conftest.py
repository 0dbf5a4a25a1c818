"""Fixtures for fault-injection tests: a PostgreSQL cluster of the session's own (to stop, crash
and restart), fresh databases on it, PgBouncer in transaction mode and a TCP proxy in front of it,
asyncpg connections that are always closed, and subprocesses that are always killed.

Without the PostgreSQL server binaries (or ``pgbouncer``) the tests that need them skip, unless
``--require-postgres`` is given (as CI does), which turns that into an error.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import pytest

from tests.conftest import pg_dsn
from tests.faults.cluster import ThrowawayCluster
from tests.faults.harness import HarnessUnavailable
from tests.faults.pgbouncer import PgBouncer
from tests.faults.proxy import TcpProxy
from tests.process.conftest import Workers

CONNECT_TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0


def _unavailable(request: pytest.FixtureRequest, exc: HarnessUnavailable) -> NoReturn:
    if request.config.getoption("--require-postgres"):
        pytest.fail(str(exc))
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[ThrowawayCluster]:
    """The session's own PostgreSQL cluster, started on first use and destroyed at the end.

    Tests may stop or restart it but must leave it running; ``cluster_db`` restarts it if not.
    """
    try:
        throwaway = ThrowawayCluster()
    except HarnessUnavailable as exc:
        _unavailable(request, exc)
    try:
        throwaway.start()
        yield throwaway
    finally:
        throwaway.destroy()


@pytest.fixture
def cluster_db(cluster: ThrowawayCluster) -> Iterator[str]:
    """A new, empty database on ``cluster``: its SQLAlchemy URL. Dropped at teardown, after
    the cluster is made to run again if the test left it stopped."""
    url = cluster.create_database()
    try:
        yield url
    finally:
        cluster.ensure_running()
        cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def pgbouncer(cluster: ThrowawayCluster, request: pytest.FixtureRequest) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of ``cluster``; stopped at teardown."""
    try:
        bouncer = PgBouncer(cluster.port)
    except HarnessUnavailable as exc:
        _unavailable(request, exc)
    with bouncer:
        yield bouncer


@pytest.fixture
def tcp_proxy(cluster: ThrowawayCluster) -> Iterator[TcpProxy]:
    """A TCP proxy in front of ``cluster``, forwarding; closed (every connection reset) at
    teardown."""
    with TcpProxy(cluster.port) as proxy:
        yield proxy


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[asyncpg.Connection]]]:
    """Open asyncpg connections: ``await connect(url, **options)`` with a SQLAlchemy URL.

    Every connection still open at teardown is closed, or terminated if it cannot close (a
    blackholed or broken one).
    """
    opened: list[asyncpg.Connection] = []

    async def open_connection(url: str, **options: Any) -> asyncpg.Connection:
        conn = await asyncpg.connect(pg_dsn(url), **{"timeout": CONNECT_TIMEOUT, **options})
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        if conn.is_closed():
            continue
        try:
            await conn.close(timeout=CLOSE_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Start subprocesses (workers, uvicorn), each given its database URL by the test, none by
    the pool; whatever still runs at teardown is killed and reaped."""
    pool = Workers("", tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
