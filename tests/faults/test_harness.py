"""The fault harness does what fault tests rely on: the cluster really restarts, PgBouncer really
pools per transaction, and the proxy really blackholes, refuses and resets."""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from fastapi_equeue.testing import eventually
from tests.faults.cluster import ThrowawayCluster
from tests.faults.harness import HOST, database_of
from tests.faults.pgbouncer import PgBouncer
from tests.faults.proxy import TcpProxy

Connect = Callable[..., Awaitable[asyncpg.Connection]]

# A dropped connection must be noticed at least this fast (not after a query timeout).
FAST_FAILURE = 2.0
BLACKHOLE_WAIT = 0.5


async def assert_dropped(conn: asyncpg.Connection) -> None:
    """asyncpg sees ``conn`` closed soon, without a query; then a query fails at once.

    Waiting for the close, rather than querying at once, keeps the test deterministic: a query
    sent between the server's FATAL message and its end of stream fails with an asyncpg
    ``InternalClientError`` instead.
    """

    async def closed() -> bool:
        return bool(conn.is_closed())

    await eventually(closed, timeout=FAST_FAILURE)
    with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
        await conn.fetchval("SELECT 1")


class TestThrowawayCluster:
    async def test_restart_breaks_old_sessions_and_serves_new_ones(
        self, cluster: ThrowawayCluster, cluster_db: str, connect: Connect
    ) -> None:
        old = await connect(cluster_db)
        old_pid = await old.fetchval("SELECT pg_backend_pid()")

        await asyncio.to_thread(cluster.restart, "fast")

        await assert_dropped(old)
        new = await connect(cluster_db)
        assert await new.fetchval("SELECT pg_backend_pid()") != old_pid

    async def test_crash_and_start_recover_the_data(
        self, cluster: ThrowawayCluster, cluster_db: str, connect: Connect
    ) -> None:
        conn = await connect(cluster_db)
        await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")

        await asyncio.to_thread(cluster.stop, "immediate")
        assert not cluster.is_running()
        with pytest.raises(ConnectionRefusedError):
            await connect(cluster_db)
        await asyncio.to_thread(cluster.start)

        assert await (await connect(cluster_db)).fetchval("SELECT n FROM kept") == 1

    async def test_terminate_sessions_ends_every_session_on_the_database(
        self, cluster: ThrowawayCluster, cluster_db: str, connect: Connect
    ) -> None:
        sessions = [await connect(cluster_db) for _ in range(2)]
        bystander = await connect(cluster.url)

        assert await asyncio.to_thread(cluster.terminate_sessions, database_of(cluster_db)) == 2

        for conn in sessions:
            await assert_dropped(conn)
        assert await bystander.fetchval("SELECT 1") == 1


class TestPgBouncer:
    def test_runs_in_transaction_mode(self, pgbouncer: PgBouncer) -> None:
        config = pgbouncer.config()

        assert config["pool_mode"] == "transaction"
        assert config["max_client_conn"] == "500"
        assert config["default_pool_size"] == "20"

    async def test_prepared_statement_does_not_outlive_its_transaction(
        self, pgbouncer: PgBouncer, cluster_db: str, connect: Connect
    ) -> None:
        url = pgbouncer.url_for(database_of(cluster_db))
        client, other = await connect(url), await connect(url)
        # A named statement (asyncpg's default): with statement_cache_size=0, asyncpg would use
        # unnamed ones and parse them again on every execution, which works through PgBouncer.
        statement = await client.prepare("SELECT 1", name="kept")
        assert await statement.fetchval() == 1

        # The other client's transaction holds the server connection the statement lives on,
        # so the pooler gives the next transaction another one, which never saw it.
        async with other.transaction():
            await other.execute("SELECT 1")
            with pytest.raises(asyncpg.InvalidSQLStatementNameError, match="does not exist"):
                await statement.fetchval()


class TestTcpProxy:
    async def test_forwards(self, tcp_proxy: TcpProxy, cluster_db: str, connect: Connect) -> None:
        conn = await connect(tcp_proxy.url_for(database_of(cluster_db)))

        assert await conn.fetchval("SELECT 41 + 1") == 42
        assert tcp_proxy.connection_count == 1

    async def test_blackhole_stalls_connections_and_heal_resets_them(
        self, tcp_proxy: TcpProxy, cluster_db: str, connect: Connect
    ) -> None:
        url = tcp_proxy.url_for(database_of(cluster_db))
        old = await connect(url)
        assert await old.fetchval("SELECT 1") == 1

        tcp_proxy.blackhole()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(old.fetchval("SELECT 1"), BLACKHOLE_WAIT)
        with pytest.raises(TimeoutError):
            await connect(url, timeout=BLACKHOLE_WAIT)
        assert not old.is_closed()

        tcp_proxy.heal()
        new = await connect(url)
        assert await new.fetchval("SELECT 1") == 1
        await assert_dropped(old)

    async def test_heal_resets_old_connections_with_rst(self, tcp_proxy: TcpProxy) -> None:
        reader, writer = await asyncio.open_connection(HOST, tcp_proxy.port)
        try:

            async def accepted() -> bool:
                return tcp_proxy.connection_count == 1

            await eventually(accepted, timeout=FAST_FAILURE)
            tcp_proxy.blackhole()
            tcp_proxy.heal()

            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), FAST_FAILURE)
        finally:
            writer.close()

    async def test_heal_without_reset_resumes_frozen_connections(
        self, tcp_proxy: TcpProxy, cluster_db: str, connect: Connect
    ) -> None:
        conn = await connect(tcp_proxy.url_for(database_of(cluster_db)))

        tcp_proxy.blackhole()
        pending = asyncio.ensure_future(conn.fetchval("SELECT 7"))
        done, _ = await asyncio.wait([pending], timeout=BLACKHOLE_WAIT)
        assert not done
        tcp_proxy.heal(reset_existing=False)

        assert await asyncio.wait_for(pending, FAST_FAILURE) == 7

    async def test_refuse_then_heal(
        self, tcp_proxy: TcpProxy, cluster_db: str, connect: Connect
    ) -> None:
        url = tcp_proxy.url_for(database_of(cluster_db))
        survivor = await connect(url)

        tcp_proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            await connect(url)
        assert await survivor.fetchval("SELECT 1") == 1

        tcp_proxy.heal(reset_existing=False)
        assert await (await connect(url)).fetchval("SELECT 1") == 1
        assert await survivor.fetchval("SELECT 1") == 1

    async def test_reset_all_drops_connections_at_once(
        self, tcp_proxy: TcpProxy, cluster_db: str, connect: Connect
    ) -> None:
        url = tcp_proxy.url_for(database_of(cluster_db))
        conn = await connect(url)

        tcp_proxy.reset_all()

        await assert_dropped(conn)
        assert await (await connect(url)).fetchval("SELECT 1") == 1
