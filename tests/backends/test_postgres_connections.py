"""The connections the PostgreSQL backend keeps: reused while healthy, closed when not, capped."""

import asyncio

import asyncpg
import pytest

from fastapi_equeue.backends.postgres.connections import Connections
from tests.conftest import pg_dsn

pytestmark = pytest.mark.postgres_only


async def _nothing(_conn: asyncpg.Connection) -> None:
    return None


def _connections(postgres_url: str, size: int = 2, acquire_timeout: float = 5.0) -> Connections:
    return Connections(
        pg_dsn(postgres_url),
        size=size,
        connect_timeout=5.0,
        acquire_timeout=acquire_timeout,
        setup=_nothing,
    )


async def _pid(connections: Connections, *, healthy: bool = True) -> int:
    conn = await connections.acquire()
    try:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    finally:
        connections.release(conn, healthy=healthy)
    return pid


async def test_a_healthy_connection_is_reused_and_an_unhealthy_one_is_not(
    postgres_url: str,
) -> None:
    connections = _connections(postgres_url)
    try:
        first = await _pid(connections)
        again = await _pid(connections, healthy=False)
        after_unhealthy = await _pid(connections)
    finally:
        await connections.close()

    assert again == first
    assert after_unhealthy != first


async def test_a_connection_left_in_a_transaction_is_not_reused(postgres_url: str) -> None:
    connections = _connections(postgres_url)
    try:
        conn = await connections.acquire()
        first = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("BEGIN")
        connections.release(conn, healthy=True)
        second = await _pid(connections)
    finally:
        await connections.close()

    assert conn.is_closed()
    assert second != first


async def test_no_more_than_size_are_in_use_and_a_waiter_times_out(postgres_url: str) -> None:
    connections = _connections(postgres_url, size=2, acquire_timeout=0.2)
    try:
        held = [await connections.acquire(), await connections.acquire()]
        with pytest.raises(TimeoutError):
            await connections.acquire()
        waiter = asyncio.create_task(connections.acquire())
        connections.release(held.pop(), healthy=True)
        third = await asyncio.wait_for(waiter, 5)
        connections.release(third, healthy=True)
        connections.release(held.pop(), healthy=True)
    finally:
        await connections.close()
