"""A database that comes back but cannot be used (here: the database does not exist) ends the
wait: workers stop, and the API keeps answering that the database is unavailable."""

import asyncio
import logging

import pytest

from fastapi_equeue import DatabaseUnavailable, EQueue
from tests.faults.proxy import TcpProxy

DEADLINE = 30.0


async def test_a_database_that_answers_but_cannot_be_used_stops_the_workers(
    tcp_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    tcp_proxy.refuse()
    queue = EQueue(tcp_proxy.url_for("no_such_database"), concurrency=2, poll_interval=0.1)

    @queue.task
    async def noop() -> None:
        return None

    caplog.set_level(logging.INFO, logger="fastapi_equeue")
    async with queue:
        runtime = queue.runtime
        assert runtime is not None
        with pytest.raises(DatabaseUnavailable):
            await queue.client.enqueue("noop")
        await asyncio.to_thread(tcp_proxy.heal)
        assert not await asyncio.wait_for(runtime.ready(), DEADLINE)
        await asyncio.wait_for(runtime.wait(), DEADLINE)
        with pytest.raises(DatabaseUnavailable, match="cannot be used"):
            await queue.client.enqueue("noop")

    assert "does not exist" in str(runtime.failure)
    assert any("cannot use it" in r.getMessage() for r in caplog.records)
