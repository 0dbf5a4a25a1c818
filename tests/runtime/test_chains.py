"""Chains through the whole queue: jobs that wait for others, on both backends.

A job enqueued with ``depends_on`` starts only once every dependency completed; when one fails
or is cancelled it ends ``cancelled`` with an error naming that dependency, and so do the jobs
that wait for it in turn.
"""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, JobStatus, UnknownDependency, events
from tests.conftest import FAST

DEADLINE = 20.0


def chain_queue(make_queue: Callable[..., EQueue], log: list[str], **options: Any) -> EQueue:
    queue = make_queue(**{**FAST, "concurrency": 4, **options})

    @queue.task(max_attempts=1)
    async def step(name: str, fail: bool = False) -> str:
        log.append(f"start {name}")
        await asyncio.sleep(0.05)  # overlapping steps would show in the log
        log.append(f"end {name}")
        if fail:
            raise RuntimeError(f"{name} broke")
        return name

    return queue


async def test_a_diamond_runs_each_job_after_its_dependencies(
    make_queue: Callable[..., EQueue],
) -> None:
    log: list[str] = []
    async with chain_queue(make_queue, log) as queue:
        a, b, c, d = await queue.client.enqueue_many(
            [
                {"job_type": "step", "payload": {"name": "a"}},
                {"job_type": "step", "payload": {"name": "b"}, "depends_on": [0]},
                {"job_type": "step", "payload": {"name": "c"}, "depends_on": [0]},
                {"job_type": "step", "payload": {"name": "d"}, "depends_on": [1, 2]},
            ]
        )
        assert d.depends_on == [b.id, c.id]
        assert b.depends_on == [a.id]

        done = await queue.client.wait(d.id, timeout=DEADLINE)

    assert done.status is JobStatus.COMPLETED
    position = {entry: i for i, entry in enumerate(log)}
    assert position["end a"] < position["start b"]
    assert position["end a"] < position["start c"]
    assert position["end b"] < position["start d"]
    assert position["end c"] < position["start d"]


async def test_a_failed_dependency_cancels_its_dependents_and_theirs(
    make_queue: Callable[..., EQueue],
) -> None:
    log: list[str] = []
    queue = chain_queue(make_queue, log)
    with queue.events.record(events.JobCancelled) as cancelled:
        async with queue:
            a, b, c = await queue.client.enqueue_many(
                [
                    {"job_type": "step", "payload": {"name": "a", "fail": True}},
                    {"job_type": "step", "payload": {"name": "b"}, "depends_on": [0]},
                    {"job_type": "step", "payload": {"name": "c"}, "depends_on": [1]},
                ]
            )
            failed = await queue.client.wait(a.id, timeout=DEADLINE)
            b_end = await queue.client.wait(b.id, timeout=DEADLINE)
            c_end = await queue.client.wait(c.id, timeout=DEADLINE)
            await cancelled.wait_count(2, timeout=DEADLINE)

    # Each cancelled dependent is announced like any job's end.
    assert sorted(e.job_id for e in cancelled.events) == sorted([b.id, c.id])

    assert failed.status is JobStatus.FAILED
    assert b_end.status is JobStatus.CANCELLED
    assert b_end.last_error == f"DependencyFailed: job {a.id} ended failed"
    assert b_end.errors[-1].error == b_end.last_error
    assert c_end.status is JobStatus.CANCELLED
    assert c_end.last_error == f"DependencyFailed: job {b.id} ended cancelled"
    assert "start b" not in log
    assert "start c" not in log


async def test_cancelling_a_waiting_dependency_cancels_the_dependent(
    make_queue: Callable[..., EQueue],
) -> None:
    log: list[str] = []
    async with chain_queue(make_queue, log) as queue:
        a = await queue.client.enqueue("step", {"name": "a"}, delay=3600)
        b = await queue.client.enqueue("step", {"name": "b"}, depends_on=[a])
        assert (await queue.client.get(b.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]

        await queue.client.cancel(a.id)
        ended = await queue.client.wait(b.id, timeout=DEADLINE)

    assert ended.status is JobStatus.CANCELLED
    assert ended.last_error == f"DependencyFailed: job {a.id} ended cancelled"


async def test_a_dependency_that_ended_already_decides_at_once(
    make_queue: Callable[..., EQueue],
) -> None:
    log: list[str] = []
    async with chain_queue(make_queue, log) as queue:
        good = await queue.client.enqueue("step", {"name": "good"})
        bad = await queue.client.enqueue("step", {"name": "bad", "fail": True})
        await queue.client.wait(good.id, timeout=DEADLINE)
        await queue.client.wait(bad.id, timeout=DEADLINE)

        after_good = await queue.client.enqueue("step", {"name": "next"}, depends_on=[good.id])
        after_bad = await queue.client.enqueue("step", {"name": "never"}, depends_on=[bad.id])

        assert after_bad.status is JobStatus.CANCELLED
        assert after_bad.last_error == f"DependencyFailed: job {bad.id} ended failed"
        assert (await queue.client.wait(after_good.id, timeout=DEADLINE)).result == "next"
    assert "start never" not in log


async def test_an_unknown_dependency_is_refused_and_nothing_is_stored(
    make_queue: Callable[..., EQueue],
) -> None:
    log: list[str] = []
    missing = "0190f5a8-8f1e-7000-8000-000000000000"
    async with chain_queue(make_queue, log, concurrency=0) as queue:
        with pytest.raises(UnknownDependency) as raised:
            await queue.client.enqueue_many(
                [
                    {"job_type": "step", "payload": {"name": "a"}},
                    {"job_type": "step", "payload": {"name": "b"}, "depends_on": [0, missing]},
                ]
            )
        assert raised.value.job_ids == [missing]
        with pytest.raises(equeue.InvalidOption, match="not a job id"):
            await queue.client.enqueue("step", {"name": "c"}, depends_on=["nope"])
        with pytest.raises(equeue.InvalidOption, match="earlier job"):
            await queue.client.enqueue_many(
                [{"job_type": "step", "payload": {"name": "d"}, "depends_on": [0]}]
            )

        assert (await queue.client.list()).items == []


async def test_post_jobs_takes_depends_on_and_refuses_unknown_ids(
    make_queue: Callable[..., EQueue],
) -> None:
    log: list[str] = []
    queue = chain_queue(make_queue, log)
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    missing = "0190f5a8-8f1e-7000-8000-000000000000"
    async with queue.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = await http.post("/jobs", json={"job_type": "step", "payload": {"name": "a"}})
            a = first.json()["id"]
            second = await http.post(
                "/jobs",
                json={"job_type": "step", "payload": {"name": "b"}, "depends_on": [a]},
            )
            assert second.status_code == 201, second.text
            assert second.json()["depends_on"] == [a]

            refused = await http.post(
                "/jobs",
                json={"job_type": "step", "payload": {"name": "c"}, "depends_on": [missing]},
            )
            assert refused.status_code == 422, refused.text
            assert missing in refused.text
            assert "depends_on" in refused.text

            malformed = await http.post(
                "/jobs",
                json={"job_type": "step", "payload": {"name": "c"}, "depends_on": "x"},
            )
            assert malformed.status_code == 422, malformed.text

            done = await queue.client.wait(second.json()["id"], timeout=DEADLINE)
            assert done.status is JobStatus.COMPLETED
            assert len((await queue.client.list()).items) == 2


async def test_a_retried_dependent_waits_again_for_its_dependency(
    make_queue: Callable[..., EQueue],
) -> None:
    switch = {"fail": True}
    queue = make_queue(**{**FAST, "concurrency": 2})

    @queue.task(max_attempts=1)
    async def flaky() -> str:
        if switch["fail"]:
            raise RuntimeError("not yet")
        return "ok"

    @queue.task(max_attempts=1)
    async def after() -> str:
        return "after"

    async with queue:
        a = await queue.client.enqueue("flaky")
        b = await queue.client.enqueue("after", depends_on=[a.id])
        assert (await queue.client.wait(b.id, timeout=DEADLINE)).status is JobStatus.CANCELLED

        # Retried while its dependency is still failed, the dependent waits for it again.
        assert (await queue.client.retry(b.id)).status is JobStatus.QUEUED
        assert queue._backend is not None
        row = await queue._backend.job_get(b.id)
        assert row is not None
        assert row.blocked

        switch["fail"] = False
        await queue.client.retry(a.id)
        done = await queue.client.wait(b.id, timeout=DEADLINE)

    assert done.status is JobStatus.COMPLETED
    assert done.result == "after"
