"""FastAPI dependencies in tasks: each kind of dependency, nesting, caching, clean-up whatever the
attempt's outcome, failures, and parameters that never reach the payload or its schema."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, InvalidPayload, JobContext, JobStatus


async def test_every_kind_of_dependency_gives_its_value_to_async_and_sync_tasks(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}
    cleaned: list[str] = []

    def plain() -> str:
        threads["plain"] = threading.get_ident()
        return "plain"

    async def coroutine() -> str:
        await asyncio.sleep(0)
        return "coroutine"

    def generator() -> Iterator[str]:
        yield "generator"
        cleaned.append("generator")

    async def async_generator() -> AsyncIterator[str]:
        yield "async generator"
        await asyncio.sleep(0)
        cleaned.append("async generator")

    @queue.task
    async def on_the_loop(
        n: int,
        a: Annotated[str, Depends(plain)],
        b: Annotated[str, Depends(coroutine)],
        c: Annotated[str, Depends(generator)],
        d: str = Depends(async_generator),
    ) -> list[Any]:
        return [n, a, b, c, d]

    @queue.task
    def in_a_thread(
        n: int,
        a: Annotated[str, Depends(plain)],
        b: Annotated[str, Depends(coroutine)],
        c: Annotated[str, Depends(generator)],
        d: str = Depends(async_generator),
    ) -> list[Any]:
        threads["task"] = threading.get_ident()
        return [n, a, b, c, d]

    async with queue:
        first = await queue.client.enqueue("on_the_loop", {"n": 1})
        done = await queue.client.wait(first.id, timeout=10)
        assert done.status is JobStatus.COMPLETED, done.last_error
        assert done.result == [1, "plain", "coroutine", "generator", "async generator"]
        assert sorted(cleaned) == ["async generator", "generator"]
        assert threads["plain"] != loop_thread  # a plain function runs in a thread, as FastAPI does

        second = await queue.client.enqueue("in_a_thread", {"n": 2})
        done = await queue.client.wait(second.id, timeout=10)

    assert done.status is JobStatus.COMPLETED, done.last_error
    assert done.result == [2, "plain", "coroutine", "generator", "async generator"]
    assert threads["task"] != loop_thread
    assert sorted(cleaned) == ["async generator", "async generator", "generator", "generator"]


async def test_nested_dependencies_share_one_value_per_attempt_and_see_the_context(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    made: list[int] = []
    fresh: list[int] = []

    async def connection(ctx: JobContext) -> dict[str, Any]:
        made.append(ctx.attempt)
        return {"job": ctx.job_id, "attempt": ctx.attempt}

    def repository(conn: Annotated[dict[str, Any], Depends(connection)]) -> dict[str, Any]:
        return {"conn": conn}

    def uncached(conn: Annotated[dict[str, Any], Depends(connection)]) -> int:
        fresh.append(1)
        return len(fresh)

    @queue.task(max_attempts=2, retry_delay=0)
    async def report(
        repo: Annotated[dict[str, Any], Depends(repository)],
        conn: Annotated[dict[str, Any], Depends(connection)],
        one: Annotated[int, Depends(uncached, use_cache=False)],
        two: Annotated[int, Depends(uncached, use_cache=False)],
        ctx: JobContext,
    ) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"same": repo["conn"] is conn, "conn": conn, "calls": [one, two]}

    async with queue:
        job = await queue.client.enqueue("report")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED, done.last_error
    assert done.result == {
        "same": True,
        "conn": {"job": job.id, "attempt": 2},
        "calls": [3, 4],  # use_cache=False: called for each parameter, in each attempt
    }
    assert made == [1, 2]  # once per attempt, shared by the task and `repository`


@pytest.mark.parametrize("sync_task", [False, True], ids=["async_task", "sync_task"])
async def test_generator_clean_up_runs_after_a_failing_attempt_and_sees_its_error(
    make_queue: Callable[..., EQueue], sync_task: bool
) -> None:
    queue = make_queue()
    seen: list[str] = []

    def sync_resource() -> Iterator[str]:
        try:
            yield "sync"
        except ValueError as exc:
            seen.append(f"sync rolled back: {exc}")
            raise
        seen.append("sync committed")

    async def async_resource() -> AsyncIterator[str]:
        try:
            yield "async"
        except ValueError as exc:
            seen.append(f"async rolled back: {exc}")
            raise
        seen.append("async committed")

    def body(
        a: Annotated[str, Depends(sync_resource)], b: Annotated[str, Depends(async_resource)]
    ) -> None:
        raise ValueError(f"{a} and {b} failed")

    async def async_body(
        a: Annotated[str, Depends(sync_resource)], b: Annotated[str, Depends(async_resource)]
    ) -> None:
        body(a, b)

    queue.task(name="failing", max_attempts=2, retry_delay=0)(body if sync_task else async_body)

    async with queue:
        job = await queue.client.enqueue("failing")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.last_error == "ValueError: sync and async failed"
    assert [e.attempt for e in done.errors] == [1, 2]
    # Each attempt cleans up, the last dependency entered first.
    assert (
        seen
        == [
            "async rolled back: sync and async failed",
            "sync rolled back: sync and async failed",
        ]
        * 2
    )


async def test_generator_clean_up_runs_after_a_timeout(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue()
    seen: list[str] = []
    started = asyncio.Event()

    async def resource() -> AsyncIterator[None]:
        try:
            yield
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        finally:
            await asyncio.sleep(0)  # clean-up may await: it runs outside the timeout
            seen.append("closed")

    @queue.task(max_attempts=1, timeout=0.2)
    async def slow(res: Annotated[None, Depends(resource)]) -> None:
        started.set()
        await asyncio.Event().wait()

    async with queue:
        job = await queue.client.enqueue("slow")
        done = await queue.client.wait(job.id, timeout=10)

    assert started.is_set()
    assert done.status is JobStatus.FAILED
    assert done.last_error == "TimeoutError: the attempt exceeded its timeout of 0.2s"
    assert seen == ["TimeoutError", "closed"]


async def test_the_timeout_covers_resolving_the_dependencies(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    ran: list[str] = []

    async def slow_connection() -> str:
        await asyncio.Event().wait()
        return "never"

    @queue.task(max_attempts=1, timeout=0.2)
    async def quick(conn: Annotated[str, Depends(slow_connection)]) -> None:
        ran.append(conn)

    async with queue:
        job = await queue.client.enqueue("quick")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.last_error == "TimeoutError: the attempt exceeded its timeout of 0.2s"
    assert ran == []


async def test_a_dependency_that_raises_fails_the_attempt_and_is_retried(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    calls: list[int] = []
    cleaned: list[int] = []

    async def opened(ctx: JobContext) -> AsyncIterator[int]:
        try:
            yield ctx.attempt
        finally:
            cleaned.append(ctx.attempt)

    def flaky(ctx: JobContext, handle: Annotated[int, Depends(opened)]) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("the database is restarting")
        return handle

    @queue.task(max_attempts=3, retry_delay=0)
    async def uses_it(value: Annotated[int, Depends(flaky)]) -> int:
        return value * 10

    async with queue:
        job = await queue.client.enqueue("uses_it")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert done.result == 20
    assert done.attempts == 2
    assert [e.error for e in done.errors] == ["ConnectionError: the database is restarting"]
    assert calls == [1, 2]
    assert cleaned == [1, 2]  # what was entered before the failure is cleaned up too


async def test_a_clean_up_that_raises_fails_the_attempt(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    async def session() -> AsyncIterator[str]:
        yield "session"
        raise RuntimeError("commit failed")

    @queue.task(max_attempts=1)
    async def write(s: Annotated[str, Depends(session)]) -> str:
        return s

    async with queue:
        job = await queue.client.enqueue("write")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.last_error == "RuntimeError: commit failed"
    assert done.result is None


async def test_a_clean_up_that_swallows_the_error_does_not_make_the_attempt_succeed(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    def forgiving() -> Iterator[None]:
        try:  # noqa: SIM105 - the point is a generator that swallows the error
            yield
        except ValueError:
            pass

    @queue.task(max_attempts=1)
    async def broken(f: Annotated[None, Depends(forgiving)]) -> str:
        raise ValueError("lost")

    async with queue:
        job = await queue.client.enqueue("broken")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.last_error == "ValueError: lost"


async def test_cancelling_a_running_job_cleans_up_its_dependencies(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    started = asyncio.Event()
    seen: list[str] = []

    async def resource() -> AsyncIterator[None]:
        try:
            yield
        finally:
            seen.append("closed")

    @queue.task
    async def forever(res: Annotated[None, Depends(resource)]) -> None:
        started.set()
        await asyncio.Event().wait()

    async with queue:
        job = await queue.client.enqueue("forever")
        async with asyncio.timeout(10):
            await started.wait()
        await queue.client.cancel(job.id)
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.CANCELLED
    assert seen == ["closed"]


async def test_dependency_parameters_are_not_in_the_payload_nor_in_the_openapi_schema(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    def connection() -> str:
        return "conn"

    @queue.task
    async def store_row(
        row_id: int, conn: Annotated[str, Depends(connection)], ctx: JobContext
    ) -> str:
        return f"{conn}:{row_id}:{ctx.attempt}"

    assert set(store_row.payload_model.model_json_schema()["properties"]) == {"row_id"}

    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    async with queue.lifespan(app):
        document = app.openapi()
        payload_schema = document["components"]["schemas"]["StoreRowPayload"]
        assert set(payload_schema["properties"]) == {"row_id"}
        assert payload_schema["required"] == ["row_id"]
        body = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
        assert set(body["examples"]["store_row"]["value"]["payload"]) == {"row_id"}

        for key, value in (("conn", "forged"), ("ctx", {})):
            with pytest.raises(InvalidPayload, match=key):
                await queue.client.enqueue("store_row", {"row_id": 1, key: value})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            refused = await http.post(
                "/jobs", json={"job_type": "store_row", "payload": {"row_id": 1, "conn": "x"}}
            )
            accepted = await http.post(
                "/jobs", json={"job_type": "store_row", "payload": {"row_id": 1}}
            )
        assert refused.status_code == 422
        assert "conn" in refused.text
        assert accepted.status_code == 201
        done = await queue.client.wait(accepted.json()["id"], timeout=10)

    assert done.result == "conn:1:1"
    assert done.payload == {"row_id": 1}


async def test_a_task_taking_any_keyword_still_refuses_a_key_naming_an_injected_parameter(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task
    async def flexible(ctx: JobContext, **options: Any) -> dict[str, Any]:
        return {"options": options, "attempt": ctx.attempt}

    async with queue:
        with pytest.raises(InvalidPayload, match="ctx"):
            await queue.client.enqueue("flexible", {"ctx": 1})
        job = await queue.client.enqueue("flexible", {"colour": "red"})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.result == {"options": {"colour": "red"}, "attempt": 1}
