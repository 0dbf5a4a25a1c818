"""Enqueueing: batches, idempotency keys, what is refused (with nothing stored), the host's
transaction, and waiting with a deadline."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from fastapi_equeue import (
    EQueue,
    InvalidOption,
    InvalidPayload,
    JobStatus,
    PayloadTooLarge,
    QueueClient,
    UnknownJobType,
)
from fastapi_equeue.testing import drain


def _enqueue_only(make_queue: Callable[..., EQueue], **options: Any) -> EQueue:
    queue = make_queue(concurrency=0, **options)

    @queue.task
    async def add(a: int, b: int) -> int:
        return a + b

    @queue.task
    async def note(text: str) -> str:
        return text

    return queue


async def _stored(client: QueueClient) -> list[str]:
    return [job.id for job in (await client.list(limit=500)).items]


async def test_enqueue_many_returns_jobs_in_input_order(make_queue: Callable[..., EQueue]) -> None:
    queue = _enqueue_only(make_queue)
    items: list[dict[str, Any]] = [
        {"job_type": "add", "payload": {"a": 1, "b": 1}, "priority": 5},
        {"job_type": "note", "payload": {"text": "second"}, "queue": "mail"},
        {"job_type": "add", "payload": {"a": 3, "b": 3}, "delay": 60},
        {"job_type": "note", "payload": {"text": "fourth"}, "max_attempts": 7},
        {"job_type": "add", "payload": {"a": 5, "b": 5}},
    ]

    async with queue:
        jobs = await queue.client.enqueue_many(items)
        stored = {job_id: await queue.client.get(job_id) for job_id in await _stored(queue.client)}

    assert [(job.job_type, job.payload) for job in jobs] == [
        (item["job_type"], item["payload"]) for item in items
    ]
    assert [job.priority for job in jobs] == [5, 0, 0, 0, 0]
    assert [job.queue for job in jobs] == ["default", "mail", "default", "default", "default"]
    assert jobs[2].scheduled_at - jobs[2].created_at >= timedelta(seconds=59)
    assert jobs[3].max_attempts == 7
    assert len({job.id for job in jobs}) == 5
    assert set(stored) == {job.id for job in jobs}
    assert all(job.status is JobStatus.QUEUED for job in jobs)


async def test_enqueue_many_validates_every_item_before_writing_any(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = _enqueue_only(make_queue)

    async with queue:
        with pytest.raises(InvalidPayload):
            await queue.client.enqueue_many(
                [
                    {"job_type": "add", "payload": {"a": 1, "b": 2}},
                    {"job_type": "add", "payload": {"a": "one", "b": 2}},
                ]
            )
        with pytest.raises(UnknownJobType):
            await queue.client.enqueue_many(
                [{"job_type": "add", "payload": {"a": 1, "b": 2}}, {"job_type": "nope"}]
            )
        assert await _stored(queue.client) == []
        assert await queue.client.enqueue_many([]) == []


async def test_idempotency_key_returns_the_existing_job_and_adds_no_row(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    runs: list[int] = []

    @queue.task
    async def charge(amount: int) -> int:
        runs.append(amount)
        return amount

    async with queue:
        first = await queue.client.enqueue("charge", {"amount": 10}, idempotency_key="order-1")
        again = await queue.client.enqueue("charge", {"amount": 99}, idempotency_key="order-1")
        done = await queue.client.wait(first.id, timeout=10)
        # Still the same job once it has finished (until retention prunes it).
        after = await queue.client.enqueue("charge", {"amount": 5}, idempotency_key="order-1")
        other = await queue.client.enqueue("charge", {"amount": 1}, idempotency_key="order-2")
        await queue.client.wait(other.id, timeout=10)
        stored = await _stored(queue.client)

    assert again.id == first.id
    assert again.payload == {"amount": 10}
    assert after.id == first.id
    assert after.status is JobStatus.COMPLETED
    assert done.result == 10
    assert other.id != first.id
    assert sorted(stored) == sorted([first.id, other.id])
    assert sorted(runs) == [1, 10]


async def test_enqueue_many_with_a_repeated_key_returns_one_job_for_both(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = _enqueue_only(make_queue)

    async with queue:
        first, middle, repeat = await queue.client.enqueue_many(
            [
                {"job_type": "note", "payload": {"text": "one"}, "idempotency_key": "k"},
                {"job_type": "note", "payload": {"text": "two"}},
                {"job_type": "note", "payload": {"text": "three"}, "idempotency_key": "k"},
            ]
        )
        stored = await _stored(queue.client)

    assert repeat.id == first.id
    assert repeat.payload == {"text": "one"}
    assert middle.id != first.id
    assert sorted(stored) == sorted([first.id, middle.id])


async def test_concurrent_enqueues_with_one_key_make_one_row(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = _enqueue_only(make_queue)

    async with queue:
        jobs = await asyncio.gather(
            *(
                queue.client.enqueue("add", {"a": n, "b": n}, idempotency_key="once")
                for n in range(30)
            )
        )
        stored = await _stored(queue.client)

    assert len({job.id for job in jobs}) == 1
    assert stored == [jobs[0].id]


async def test_oversize_payload_is_refused_and_nothing_stored(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = _enqueue_only(make_queue, max_payload_bytes=1000)

    async with queue:
        # 600 characters, but 1,200 bytes of UTF-8: the limit counts bytes.
        with pytest.raises(PayloadTooLarge) as caught:
            await queue.client.enqueue("note", {"text": "é" * 600})
        with pytest.raises(PayloadTooLarge):
            await queue.client.enqueue_many(
                [
                    {"job_type": "note", "payload": {"text": "small"}},
                    {"job_type": "note", "payload": {"text": "x" * 2000}},
                ]
            )
        fits = await queue.client.enqueue("note", {"text": "x" * 900})
        stored = await _stored(queue.client)

    assert caught.value.limit == 1000
    assert caught.value.size > 1200
    assert stored == [fits.id]


async def test_invalid_payload_is_refused_and_nothing_stored(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = _enqueue_only(make_queue)
    bad_payloads: list[Any] = [
        {"a": "one", "b": 2},
        {"a": 1},
        {"a": 1, "b": 2, "c": 3},
        [1, 2],
        "a=1&b=2",
    ]

    async with queue:
        for payload in bad_payloads:
            with pytest.raises(InvalidPayload) as caught:
                await queue.client.enqueue("add", payload)
            assert caught.value.job_type == "add"
        with pytest.raises(InvalidPayload) as caught:
            await queue.client.enqueue("add", {"a": "one", "b": 2})
        stored = await _stored(queue.client)

    assert [error["loc"] for error in caught.value.errors] == [["a"]]
    assert stored == []


async def test_payload_with_nan_is_invalid_and_nothing_stored(
    make_queue: Callable[..., EQueue],
) -> None:
    # NaN and infinity have no JSON encoding: refused like any other invalid payload.
    queue = make_queue(concurrency=0)

    @queue.task
    async def scale(factor: float) -> float:
        return factor

    async with queue:
        for value in (float("nan"), float("inf")):
            with pytest.raises(InvalidPayload):
                await queue.client.enqueue("scale", {"factor": value})
        stored = await _stored(queue.client)

    assert stored == []


async def test_unknown_job_type_is_refused(make_queue: Callable[..., EQueue]) -> None:
    queue = _enqueue_only(make_queue)

    async with queue:
        with pytest.raises(UnknownJobType) as caught:
            await queue.client.enqueue("os.system", {"command": "true"})
        stored = await _stored(queue.client)

    assert caught.value.job_type == "os.system"
    assert stored == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("priority", "x"),
        ("priority", 1.5),
        ("delay", -1),
        ("delay", float("inf")),
        ("run_at", datetime(2030, 1, 1, 12, 0)),
        ("max_attempts", 0),
        ("queue", ""),
        ("idempotency_key", ""),
    ],
)
async def test_bad_enqueue_option_is_refused(
    make_queue: Callable[..., EQueue], option: str, value: Any
) -> None:
    queue = _enqueue_only(make_queue)

    async with queue:
        with pytest.raises(InvalidOption) as caught:
            await queue.client.enqueue("add", {"a": 1, "b": 2}, **{option: value})
        stored = await _stored(queue.client)

    assert caught.value.field == option
    assert stored == []


class _Rollback(Exception):
    """Raised to roll the host's transaction back."""


@asynccontextmanager
async def _host_transaction(
    engine: AsyncEngine, through: str
) -> AsyncIterator[AsyncSession | AsyncConnection]:
    if through == "session":
        async with AsyncSession(engine) as session, session.begin():
            yield session
    else:
        async with engine.begin() as conn:
            yield conn


@pytest.mark.parametrize("through", ["session", "connection"])
async def test_job_enqueued_in_a_rolled_back_host_transaction_never_exists(
    make_queue: Callable[..., EQueue], database_url: str, through: str
) -> None:
    queue = make_queue()
    ran: list[str] = []

    @queue.task
    async def welcome(user: str) -> None:
        ran.append(user)

    engine = create_async_engine(database_url)
    try:
        async with queue:
            with contextlib.suppress(_Rollback):
                async with _host_transaction(engine, through) as tx:
                    job = await queue.client.enqueue("welcome", {"user": "ann"}, session=tx)
                    raise _Rollback
            await drain(queue)
            missing = await queue.client.get(job.id)
            stored = await _stored(queue.client)
    finally:
        await engine.dispose()

    assert missing is None
    assert stored == []
    assert ran == []


@pytest.mark.parametrize("through", ["session", "connection"])
async def test_job_enqueued_in_a_committed_host_transaction_runs(
    make_queue: Callable[..., EQueue], database_url: str, through: str
) -> None:
    queue = make_queue()

    @queue.task
    async def welcome(user: str) -> str:
        return f"hello {user}"

    engine = create_async_engine(database_url)
    try:
        async with queue:
            async with _host_transaction(engine, through) as tx:
                job = await queue.client.enqueue("welcome", {"user": "bob"}, session=tx)
            done = await queue.client.wait(job.id, timeout=10)
    finally:
        await engine.dispose()

    assert done.status is JobStatus.COMPLETED
    assert done.result == "hello bob"


async def test_job_in_an_open_host_transaction_is_invisible_until_commit(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    queue = _enqueue_only(make_queue)
    engine = create_async_engine(database_url)
    try:
        async with queue:
            async with AsyncSession(engine) as session, session.begin():
                job = await queue.client.enqueue("note", {"text": "pending"}, session=session)
                # Someone else looks meanwhile: they must not see the job, nor wait for the commit.
                reader = asyncio.create_task(queue.client.get(job.id))
                finished, _ = await asyncio.wait({reader}, timeout=3)
            seen_before = await reader  # at the latest, it goes on after the commit
            seen_after = await queue.client.get(job.id)
    finally:
        await engine.dispose()

    assert finished == {reader}, "reading the queue waited for the host's open transaction"
    assert seen_before is None
    assert seen_after is not None
    assert seen_after.status is JobStatus.QUEUED


async def test_idempotency_key_in_a_host_transaction_finds_the_committed_job(
    make_queue: Callable[..., EQueue], database_url: str
) -> None:
    queue = _enqueue_only(make_queue)
    engine = create_async_engine(database_url)
    try:
        async with queue:
            first = await queue.client.enqueue("note", {"text": "a"}, idempotency_key="k")
            async with AsyncSession(engine) as session, session.begin():
                again = await queue.client.enqueue(
                    "note", {"text": "b"}, idempotency_key="k", session=session
                )
            stored = await _stored(queue.client)
    finally:
        await engine.dispose()

    assert again.id == first.id
    assert stored == [first.id]


async def test_session_that_is_not_sqlalchemy_async_is_a_type_error(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = _enqueue_only(make_queue)

    async with queue:
        for session in (object(), "postgresql://db"):
            with pytest.raises(TypeError, match="AsyncSession or AsyncConnection"):
                await queue.client.enqueue("note", {"text": "x"}, session=session)  # type: ignore[arg-type]
        stored = await _stored(queue.client)

    assert stored == []


async def test_wait_with_a_timeout_on_a_job_that_never_finishes_raises_timeout_error(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = _enqueue_only(make_queue)

    async with queue:
        job = await queue.client.enqueue("note", {"text": "nobody runs me"})
        with pytest.raises(TimeoutError):
            await queue.client.wait(job.id, timeout=0.3)
        after = await queue.client.get(job.id)

    assert after is not None
    assert after.status is JobStatus.QUEUED


@pytest.mark.postgres_only
async def test_an_app_that_only_enqueues_listens_only_once_it_waits(
    make_queue: Callable[..., EQueue],
) -> None:
    # A web process with concurrency=0 keeps no LISTEN connection (nor hears every job it
    # enqueues announced back to it) until something needs the notifications.
    queue = _enqueue_only(make_queue)

    async with queue:
        backend = queue._backend
        assert backend is not None
        notifier: Any = backend.notifier
        job = await queue.client.enqueue("note", {"text": "unheard"})
        listening_after_enqueue = notifier.connected
        with pytest.raises(TimeoutError):
            await queue.client.wait(job.id, timeout=0.3)
        listening_after_wait = notifier.connected

    assert listening_after_enqueue is False
    assert listening_after_wait is True
