"""``JobContext``: what an attempt knows about itself, the app whose lifespan runs the queue, and
the checks on progress reports."""

import gc
import math
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI

from fastapi_equeue import EQueue, JobContext, JobStatus
from fastapi_equeue.context import MAX_PROGRESS_MESSAGE_CHARS


async def test_the_context_describes_the_running_attempt(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    seen: list[dict[str, Any]] = []

    @queue.task(name="context-probe", queue="probes", max_attempts=2, retry_delay=0)
    def probe(n: int, ctx: JobContext) -> int:
        seen.append(
            {
                "job_id": ctx.job_id,
                "job_type": ctx.job_type,
                "queue": ctx.queue,
                "attempt": ctx.attempt,
                "app": ctx.app,
            }
        )
        if ctx.attempt == 1:
            raise RuntimeError("again")
        return n

    async with queue:
        job = await queue.client.enqueue("context-probe", {"n": 5})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    expected = {"job_id": job.id, "job_type": "context-probe", "queue": "probes", "app": None}
    assert seen == [{**expected, "attempt": 1}, {**expected, "attempt": 2}]


async def test_a_dependency_reaches_what_the_host_lifespan_set_up_through_the_app(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.greeting = "hello from the host"
        async with queue.lifespan(app):
            yield

    def greeting(ctx: JobContext) -> str:
        return str(ctx.app.state.greeting)

    @queue.task
    async def greet(name: str, text: Annotated[str, Depends(greeting)], ctx: JobContext) -> str:
        assert ctx.app is app
        return f"{text}, {name}"

    app = FastAPI(lifespan=lifespan)
    async with app.router.lifespan_context(app):
        job = await queue.client.enqueue("greet", {"name": "Ada"})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED, done.last_error
    assert done.result == "hello from the host, Ada"


class TestProgressChecks:
    @pytest.mark.parametrize(
        "fraction", [-0.01, 1.01, math.nan, math.inf, True, "0.5", None, [0.5]]
    )
    def test_a_fraction_outside_0_to_1_or_not_a_number_is_refused(self, fraction: Any) -> None:
        ctx = JobContext(job_id="j", job_type="t", queue="q", attempt=1)
        with pytest.raises(ValueError, match="fraction must be a number from 0 to 1"):
            ctx.progress(fraction)

    @pytest.mark.parametrize(
        ("message", "problem"),
        [
            (42, "must be a string or None"),
            ("x" * (MAX_PROGRESS_MESSAGE_CHARS + 1), "at most 500 characters"),
            ("a\x00b", "NUL"),
            ("\ud800", "valid Unicode"),
        ],
    )
    def test_a_bad_message_is_refused(self, message: Any, problem: str) -> None:
        ctx = JobContext(job_id="j", job_type="t", queue="q", attempt=1)
        with pytest.raises(ValueError, match=problem):
            ctx.progress(0.5, message)

    async def test_a_report_is_taken_at_once_and_awaiting_it_is_optional(self) -> None:
        reports: list[tuple[float, str | None]] = []
        ctx = JobContext(
            job_id="j",
            job_type="t",
            queue="q",
            attempt=1,
            report=lambda fraction, message: reports.append((fraction, message)),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ctx.progress(0)
            await ctx.progress(1, "done")
            ctx.progress(0.25, "x" * MAX_PROGRESS_MESSAGE_CHARS)
            gc.collect()  # an unawaited coroutine would warn when collected

        assert reports == [(0.0, None), (1.0, "done"), (0.25, "x" * MAX_PROGRESS_MESSAGE_CHARS)]
        assert all(type(fraction) is float for fraction, _ in reports)
        assert caught == []

    def test_a_task_can_be_called_directly_with_a_context_of_its_own(
        self, make_queue: Callable[..., EQueue]
    ) -> None:
        queue = make_queue()

        @queue.task
        def count(items: list[int], ctx: JobContext) -> int:
            for done, _ in enumerate(items, 1):
                ctx.progress(done / len(items))
            return len(items)

        ctx = JobContext(job_id="test", job_type="count", queue="default", attempt=1)
        assert count([1, 2, 3], ctx) == 3
        assert repr(ctx) == (
            "JobContext(job_id='test', job_type='count', queue='default', attempt=1)"
        )
