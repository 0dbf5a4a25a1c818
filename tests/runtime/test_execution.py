"""Running one attempt: results stored, sync tasks in threads, typed arguments, the concurrency cap,
results that cannot be stored, and rows no registered task can run."""

import asyncio
import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from fastapi_equeue import EQueue, JobStatus
from fastapi_equeue.runtime import completer as completer_module


class Parcel(BaseModel):
    name: str
    weight: Decimal


async def test_async_task_result_is_stored(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue()

    @queue.task
    async def summarise(words: list[str]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"count": len(words), "first": words[0], "nested": {"ok": True}}

    async with queue:
        job = await queue.client.enqueue("summarise", {"words": ["a", "b", "c"]})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED
    assert done.result == {"count": 3, "first": "a", "nested": {"ok": True}}
    assert done.attempts == 1
    assert done.errors == []
    assert done.last_error is None
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at


async def test_results_of_every_json_type_round_trip(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue()
    values: list[Any] = [
        "a string",
        "",
        "ünïcødé ✓",
        '{"looks": "like json"}',
        42,
        -1.5,
        True,
        False,
        None,
        [1, "two", None, [3]],
        {"k": [{"deep": None}]},
    ]

    @queue.task
    async def echo(value: Any) -> Any:
        return value

    async with queue:
        jobs = await queue.client.enqueue_many(
            [{"job_type": "echo", "payload": {"value": value}} for value in values]
        )
        done = [await queue.client.wait(job.id, timeout=10) for job in jobs]

    assert [job.status for job in done] == [JobStatus.COMPLETED] * len(values)
    assert [job.result for job in done] == values


async def test_sync_task_runs_in_a_thread_without_blocking_the_loop(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    loop_thread = threading.get_ident()
    ticks = [0]
    seen: dict[str, int] = {}

    @queue.task
    def crunch() -> str:
        seen["thread"] = threading.get_ident()
        before = ticks[0]
        time.sleep(0.3)  # blocking work: it would freeze the loop if it ran on it
        seen["ticks"] = ticks[0] - before
        return "crunched"

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    async with queue:
        ticking = asyncio.create_task(ticker())
        try:
            job = await queue.client.enqueue("crunch")
            done = await queue.client.wait(job.id, timeout=10)
        finally:
            ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticking

    assert done.status is JobStatus.COMPLETED
    assert done.result == "crunched"
    assert seen["thread"] != loop_thread
    # 0.3 s of 10 ms ticks is ~30; a blocked loop would give 0. Generous for a loaded machine.
    assert seen["ticks"] >= 5


async def test_payload_keys_arrive_as_typed_keyword_arguments(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()
    received: dict[str, Any] = {}

    @queue.task
    async def ship(when: datetime, parcel: Parcel, copies: int, note: str = "none") -> str:
        received.update(when=when, parcel=parcel, copies=copies, note=note)
        return parcel.name

    async with queue:
        job = await queue.client.enqueue(
            "ship",
            {
                "when": "2024-05-06T07:08:09+00:00",
                "parcel": {"name": "box", "weight": "1.25"},
                "copies": "3",
            },
        )
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.COMPLETED, done.last_error
    assert received["when"] == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert isinstance(received["when"], datetime)
    assert received["parcel"] == Parcel(name="box", weight=Decimal("1.25"))
    assert isinstance(received["parcel"], Parcel)
    assert received["copies"] == 3
    assert received["note"] == "none"
    # The stored payload is the validated, JSON-ready one (coerced at enqueue time).
    assert job.payload["copies"] == 3
    assert "note" not in job.payload


async def test_concurrency_limit_caps_jobs_running_at_once(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=3)
    running = 0
    peak = 0
    three_running = asyncio.Event()

    @queue.task
    async def hold(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            three_running.set()
        try:
            # The first three wait for each other, so the cap is reached; the rest pass through.
            await asyncio.wait_for(three_running.wait(), 5)
            await asyncio.sleep(0.02)
        finally:
            running -= 1
        return n

    async with queue:
        jobs = await queue.client.enqueue_many(
            [{"job_type": "hold", "payload": {"n": n}} for n in range(9)]
        )
        done = [await queue.client.wait(job.id, timeout=20) for job in jobs]

    assert [job.status for job in done] == [JobStatus.COMPLETED] * 9
    assert [job.result for job in done] == list(range(9))
    assert peak == 3


async def test_outcomes_that_trickle_in_while_jobs_run_share_their_writes(
    make_queue: Callable[..., EQueue],
) -> None:
    # Twenty jobs end a millisecond apart: each outcome waits (up to the completer's linger)
    # for the others to share its commit, instead of costing a write of its own.
    queue = make_queue(concurrency=20)
    started = 0
    all_started = asyncio.Event()

    @queue.task
    async def staggered(n: int) -> int:
        nonlocal started
        started += 1
        if started == 20:
            all_started.set()
        await asyncio.wait_for(all_started.wait(), 10)
        await asyncio.sleep(n * 0.001)
        return n

    writes: list[int] = []
    async with queue:
        backend = queue._backend
        assert backend is not None
        complete_many = backend.job_complete_many

        async def counting(params: Any) -> set[str]:
            writes.append(len(params))
            return await complete_many(params)

        backend.job_complete_many = counting  # type: ignore[method-assign]
        jobs = await queue.client.enqueue_many(
            [{"job_type": "staggered", "payload": {"n": n}} for n in range(20)]
        )
        done = [await queue.client.wait(job.id, timeout=20) for job in jobs]

    assert [job.result for job in done] == list(range(20))
    assert sum(writes) == 20
    assert len(writes) <= 5, writes


async def test_result_that_is_not_json_serialisable_fails_the_attempt(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue()

    @queue.task(max_attempts=1)
    async def unstorable() -> object:
        return {"when": datetime.now(UTC)}

    async with queue:
        job = await queue.client.enqueue("unstorable")
        done = await queue.client.wait(job.id, timeout=10)

    assert done.status is JobStatus.FAILED
    assert done.result is None
    assert done.last_error is not None
    assert done.last_error.startswith("ResultNotSerialisable: ")
    assert "not JSON-serialisable" in done.last_error
    assert [error.error for error in done.errors] == [done.last_error]


async def test_result_with_nan_fails_the_attempt_instead_of_blocking_writes(
    make_queue: Callable[..., EQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    # NaN is not JSON: the attempt must fail like any other unstorable result, and the outcome
    # of a job finishing alongside it must still be written.
    # Should an outcome be unwritable, shutdown gives up on it after FLUSH_WAIT: keep that short.
    monkeypatch.setattr(completer_module, "FLUSH_WAIT", 2.0)
    queue = make_queue()

    @queue.task(max_attempts=1)
    async def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator else float("nan")

    async with queue:
        bad, good = await queue.client.enqueue_many(
            [
                {"job_type": "ratio", "payload": {"numerator": 0, "denominator": 0}},
                {"job_type": "ratio", "payload": {"numerator": 1, "denominator": 2}},
            ]
        )
        good_done = await queue.client.wait(good.id, timeout=5)
        bad_done = await queue.client.wait(bad.id, timeout=5)

    assert good_done.status is JobStatus.COMPLETED
    assert good_done.result == 0.5
    assert bad_done.status is JobStatus.FAILED
    assert bad_done.last_error is not None
    assert bad_done.last_error.startswith("ResultNotSerialisable: ")


async def test_row_of_an_unregistered_job_type_fails_without_importing_it(
    make_queue: Callable[..., EQueue], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that a worker resolving job types by import would load: it must stay unloaded.
    module = f"equeue_probe_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text("def run() -> str:\n    return 'imported'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    job_type = f"{module}:run"

    worker = make_queue()
    # Another app on the same database knows the type; the worker's queue does not.
    producer = make_queue(concurrency=0)

    @producer.task(name=job_type, max_attempts=3)
    async def run() -> str:
        return "ran"

    async with worker, producer:
        job = await producer.client.enqueue(job_type)
        done = await worker.client.wait(job.id, timeout=10)

    assert job_type not in worker.registry
    assert done.status is JobStatus.FAILED
    assert done.result is None
    # Not retried: no attempt of a type nobody registered can succeed.
    assert done.attempts == 1
    assert done.last_error is not None
    assert done.last_error.startswith("UnknownJobType: ")
    assert [error.attempt for error in done.errors] == [1]
    assert module not in sys.modules
