"""What reaches the backend besides the URL: the pool size, a pooler's URL parameter, a separate
LISTEN URL, and polling only."""

import uuid
from collections.abc import Callable

import asyncpg
import pytest

from fastapi_equeue import EQueue, JobStatus
from tests.conftest import pg_dsn

DEADLINE = 15.0


def _with(url: str, **params: str) -> str:
    separator = "&" if "?" in url else "?"
    return url + separator + "&".join(f"{k}={v}" for k, v in params.items())


async def _sessions(url: str, application_name: str) -> int:
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await conn.close()
    return count


async def test_one_connection_is_enough_for_a_worker(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue(pool_size=1, concurrency=10)

    @queue.task
    async def double(n: int) -> int:
        return 2 * n

    async with queue:
        jobs = await queue.client.enqueue_many(
            [{"job_type": "double", "payload": {"n": n}} for n in range(30)]
        )
        done = [await queue.client.wait(job.id, timeout=DEADLINE) for job in jobs]

    assert [job.result for job in done] == [2 * n for n in range(30)]


@pytest.mark.postgres_only
async def test_the_pool_size_caps_the_connections(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    name = f"equeue-pool-{uuid.uuid4().hex[:8]}"
    queue = EQueue(_with(database_url, application_name=name), pool_size=2, poll_only=True)

    @queue.task
    async def noop(n: int) -> None:
        return None

    async with queue:
        jobs = await queue.client.enqueue_many(
            [{"job_type": "noop", "payload": {"n": n}} for n in range(50)]
        )
        for job in jobs:
            await queue.client.wait(job.id, timeout=DEADLINE)
        assert 1 <= await _sessions(database_url, name) <= 2


@pytest.mark.postgres_only
async def test_a_poolers_statement_cache_parameter_is_read_not_sent_to_the_server(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    # asyncpg would pass an unknown URL parameter to the server as a setting, and the server
    # would refuse the connection.
    queue = EQueue(_with(database_url, prepared_statement_cache_size="0"), poll_interval=0.05)

    @queue.task
    async def echo(text: str) -> str:
        return text

    async with queue:
        job = await queue.client.enqueue("echo", {"text": "through a pooler"})
        done = await queue.client.wait(job.id, timeout=DEADLINE)

    assert done.result == "through a pooler"


@pytest.mark.postgres_only
async def test_listening_goes_to_the_listen_url(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    listen_name = f"equeue-listen-{uuid.uuid4().hex[:8]}"
    queue = make_queue(listen_url=_with(database_url, application_name=listen_name))

    @queue.task
    async def echo(text: str) -> str:
        return text

    async with queue:
        job = await queue.client.enqueue("echo", {"text": "hi"})
        await queue.client.wait(job.id, timeout=DEADLINE)
        assert await _sessions(database_url, listen_name) == 1


@pytest.mark.postgres_only
async def test_poll_only_listens_nowhere_and_still_finds_other_processes_jobs(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    name = f"equeue-poll-{uuid.uuid4().hex[:8]}"
    worker = EQueue(_with(database_url, application_name=name), poll_only=True, poll_interval=0.05)
    other = make_queue(concurrency=0)
    for queue in (worker, other):

        @queue.task
        async def echo(text: str) -> str:
            return text

    async with worker, other:
        job = await other.client.enqueue("echo", {"text": "found by polling"})
        done = await other.client.wait(job.id, timeout=DEADLINE)
        conn = await asyncpg.connect(pg_dsn(database_url), timeout=5)
        try:
            listening = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                "AND query ILIKE 'LISTEN%'",
                name,
            )
        finally:
            await conn.close()

    assert done.status is JobStatus.COMPLETED
    assert done.result == "found by polling"
    assert listening == 0
