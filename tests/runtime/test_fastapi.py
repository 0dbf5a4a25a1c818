"""Inside FastAPI: the lifespan, ``Depends(get_queue)`` in a host endpoint, a host's own lifespan,
the error without a lifespan, and ``testing.drain``."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

import fastapi_equeue as equeue
from fastapi_equeue import ConfigurationError, EQueue, JobStatus, QueueClient
from fastapi_equeue.testing import drain


def _signup_app(queue: EQueue, lifespan: Any) -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.post("/signup")
    async def signup(body: dict[str, str], q: QueueClient = Depends(equeue.get_queue)) -> dict:  # noqa: B008
        job = await q.enqueue(
            "send_email",
            {"recipient_email": body["email"], "subject": "Hi", "body": "Welcome"},
        )
        return {"job_id": job.id}

    return app


def _with_send_email(queue: EQueue, sent: list[str]) -> None:
    @queue.task(max_attempts=3, timeout=30)
    async def send_email(recipient_email: str, subject: str, body: str) -> dict:
        sent.append(recipient_email)
        return {"delivered": True}


def _http(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_endpoint_enqueues_through_get_queue_and_the_job_completes(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    sent: list[str] = []
    _with_send_email(queue, sent)
    app = _signup_app(queue, queue.lifespan)

    # ASGITransport does not run lifespans: run the app's own, as a server would.
    async with queue.lifespan(app), _http(app) as http:
        response = await http.post("/signup", json={"email": "a@example.com"})
        assert response.status_code == 200
        job_id = response.json()["job_id"]
        await drain(queue)
        job = await queue.client.get(job_id)

    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"delivered": True}
    assert sent == ["a@example.com"]
    assert not hasattr(app.state, "equeue")


async def test_queue_lifespan_nested_in_a_host_lifespan(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    sent: list[str] = []
    host_events: list[str] = []
    _with_send_email(queue, sent)

    @asynccontextmanager
    async def host_lifespan(app: FastAPI) -> AsyncIterator[None]:
        host_events.append("host up")
        async with queue.lifespan(app):
            host_events.append("queue up")
            yield
        host_events.append("queue down")

    app = _signup_app(queue, host_lifespan)

    async with app.router.lifespan_context(app), _http(app) as http:
        response = await http.post("/signup", json={"email": "b@example.com"})
        job_id = response.json()["job_id"]
        done = await queue.client.wait(job_id, timeout=10)

    assert response.status_code == 200
    assert done.status is JobStatus.COMPLETED
    assert sent == ["b@example.com"]
    assert host_events == ["host up", "queue up", "queue down"]
    assert not queue.started


async def test_get_queue_without_the_lifespan_is_a_configuration_error(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    _with_send_email(queue, [])
    # The queue runs, but this app was not given its lifespan: get_queue cannot find it.
    app = _signup_app(queue, None)

    async with queue, _http(app) as http:
        with pytest.raises(ConfigurationError, match=r"queue\.lifespan"):
            await http.post("/signup", json={"email": "c@example.com"})
        stored = (await queue.client.list()).items

    assert stored == []


async def test_drain_runs_the_jobs_of_an_enqueue_only_queue(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    sent: list[str] = []
    _with_send_email(queue, sent)
    app = _signup_app(queue, queue.lifespan)

    async with queue.lifespan(app), _http(app) as http:
        assert queue.runtime is None  # no workers of its own
        ids = [
            (await http.post("/signup", json={"email": f"{n}@example.com"})).json()["job_id"]
            for n in range(5)
        ]
        later = await queue.client.enqueue(
            "send_email",
            {"recipient_email": "later@example.com", "subject": "s", "body": "b"},
            delay=60,
        )
        await drain(queue)
        jobs = [await queue.client.get(job_id) for job_id in ids]
        waiting = await queue.client.get(later.id)

    assert [job.status if job else None for job in jobs] == [JobStatus.COMPLETED] * 5
    assert sorted(sent) == sorted(f"{n}@example.com" for n in range(5))
    # drain leaves jobs scheduled for later waiting.
    assert waiting is not None
    assert waiting.status is JobStatus.QUEUED


async def test_drain_runs_every_attempt_of_a_job_retried_without_delay(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    calls = 0

    @queue.task(max_attempts=3, retry_delay=0)
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError("not yet")
        return calls

    async with queue:
        job = await queue.client.enqueue("flaky")
        await drain(queue)
        done = await queue.client.get(job.id)

    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 3
    assert done.result == 3
