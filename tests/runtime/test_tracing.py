"""OpenTelemetry traces: a PRODUCER span per enqueued job, whose context is stored with the job,
and a CONSUMER span per attempt, linked to it; the request that enqueues leads to the job.

Each test gives its queue a ``TracerProvider`` of its own (the API's global provider can be set
once per process): nothing here leaks into other tests.
"""

import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, JobStatus, events, tracing
from fastapi_equeue.testing import ManualClock, eventually

DEADLINE = 10.0


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def _tasks(queue: EQueue) -> None:
    @queue.task
    async def add(a: int, b: int) -> int:
        return a + b

    @queue.task(max_attempts=1)
    async def boom() -> None:
        raise ValueError("no")


def _spans(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is kind]


def _ids(context: SpanContext) -> tuple[int, int]:
    # Not the SpanContext itself: one extracted from the stored job is marked remote.
    return context.trace_id, context.span_id


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def _stored_context(queue: EQueue, job_id: str) -> dict[str, str] | None:
    assert queue._store is not None
    row = await queue._store.get(job_id)
    assert row is not None
    return row.trace_context


async def test_an_enqueue_is_one_producer_span_whose_context_is_stored(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue = make_queue(concurrency=0, tracer_provider=provider)
    _tasks(queue)

    async with queue:
        job = await queue.client.enqueue("add", {"a": 1, "b": 2})
        stored = await _stored_context(queue, job.id)

    (span,) = _spans(exporter, SpanKind.PRODUCER)
    assert span.name == "send default"
    assert dict(span.attributes or {}) == {
        "messaging.system": "fastapi_equeue",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": "default",
        "messaging.message.id": job.id,
        "messaging.fastapi_equeue.job_type": "add",
    }
    assert span.context is not None
    assert stored is not None
    assert stored["traceparent"] == _traceparent(span.context)


async def test_enqueue_many_opens_a_producer_span_per_job(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue = make_queue(concurrency=0, tracer_provider=provider)
    _tasks(queue)

    async with queue:
        jobs = await queue.client.enqueue_many(
            [{"job_type": "add", "payload": {"a": i, "b": i}} for i in range(3)]
        )
        stored = [await _stored_context(queue, job.id) for job in jobs]

    spans = _spans(exporter, SpanKind.PRODUCER)
    assert [s.attributes["messaging.message.id"] for s in spans if s.attributes] == [
        job.id for job in jobs
    ]
    assert [c["traceparent"] if c else None for c in stored] == [
        _traceparent(s.context) for s in spans if s.context
    ]


async def test_an_attempt_is_a_consumer_span_linked_to_its_enqueue(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue = make_queue(concurrency=1, tracer_provider=provider)
    _tasks(queue)

    async with queue:
        job = await queue.client.enqueue("add", {"a": 1, "b": 2})
        done = await queue.client.wait(job.id, timeout=DEADLINE)
    assert done.status is JobStatus.COMPLETED

    (producer,) = _spans(exporter, SpanKind.PRODUCER)
    (consumer,) = _spans(exporter, SpanKind.CONSUMER)
    assert consumer.name == "process default"
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "fastapi_equeue",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": job.id,
        "messaging.fastapi_equeue.job_type": "add",
        "messaging.fastapi_equeue.attempt": 1,
    }
    # A new trace of its own, linked (not parented) to the enqueue.
    assert consumer.parent is None
    assert producer.context is not None
    assert consumer.context is not None
    assert consumer.context.trace_id != producer.context.trace_id
    assert [_ids(link.context) for link in consumer.links] == [_ids(producer.context)]
    assert consumer.status.status_code is StatusCode.UNSET


async def test_a_failed_attempt_is_an_error_span_with_its_exception(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue = make_queue(concurrency=1, tracer_provider=provider)
    _tasks(queue)

    async with queue:
        job = await queue.client.enqueue("boom")
        done = await queue.client.wait(job.id, timeout=DEADLINE)
    assert done.status is JobStatus.FAILED

    (consumer,) = _spans(exporter, SpanKind.CONSUMER)
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.attributes is not None
    assert consumer.attributes["error.type"] == "ValueError"
    (event,) = consumer.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "no"


async def test_the_tasks_spans_nest_under_the_attempt(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue = make_queue(concurrency=2, tracer_provider=provider)
    tracer = provider.get_tracer("tests")

    @queue.task
    async def fetch() -> None:
        with tracer.start_as_current_span("inside fetch"):
            pass

    @queue.task
    def parse() -> None:  # in a worker thread
        with tracer.start_as_current_span("inside parse"):
            pass

    async with queue:
        jobs = [await queue.client.enqueue("fetch"), await queue.client.enqueue("parse")]
        for job in jobs:
            await queue.client.wait(job.id, timeout=DEADLINE)

    consumers = {
        span.attributes["messaging.fastapi_equeue.job_type"]: span
        for span in _spans(exporter, SpanKind.CONSUMER)
        if span.attributes
    }
    for job_type in ("fetch", "parse"):
        (inside,) = [s for s in exporter.get_finished_spans() if s.name == f"inside {job_type}"]
        consumer = consumers[job_type]
        assert inside.parent is not None
        assert consumer.context is not None
        assert _ids(inside.parent) == _ids(consumer.context)


async def test_a_failed_enqueue_marks_its_span_failed(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue = make_queue(concurrency=0, tracer_provider=provider)
    _tasks(queue)

    async with queue:
        with pytest.raises(equeue.InvalidOption):
            await queue.client.enqueue("add", {"a": 1, "b": 2}, depends_on=[str(uuid.uuid4())])

    (span,) = _spans(exporter, SpanKind.PRODUCER)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "UnknownDependency"


async def test_a_requests_trace_leads_to_the_jobs_it_enqueued(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    queue = make_queue(concurrency=1, tracer_provider=provider)
    _tasks(queue)
    tracer = provider.get_tracer("tests")
    app = FastAPI(lifespan=queue.lifespan)

    @app.post("/sum")
    async def total(
        client: Annotated[equeue.QueueClient, Depends(equeue.get_queue)],
    ) -> dict[str, str]:
        with tracer.start_as_current_span("request"):
            job = await client.enqueue("add", {"a": 1, "b": 2})
        return {"id": job.id}

    with queue.events.record(events.JobCompleted) as completed:
        async with (
            queue.lifespan(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as http,
        ):
            job_id = (await http.post("/sum")).json()["id"]
            await completed.wait_for(lambda e: e.job_id == job_id, timeout=DEADLINE)

    (request,) = [span for span in exporter.get_finished_spans() if span.name == "request"]
    (producer,) = _spans(exporter, SpanKind.PRODUCER)
    (consumer,) = _spans(exporter, SpanKind.CONSUMER)
    assert request.context is not None
    assert producer.parent is not None
    assert _ids(producer.parent) == _ids(request.context)
    assert producer.context is not None
    assert producer.context.trace_id == request.context.trace_id
    assert [_ids(link.context) for link in consumer.links] == [_ids(producer.context)]


async def test_without_a_provider_nothing_is_traced_and_the_context_stays_null(
    make_queue: Callable[..., EQueue], exporter: InMemorySpanExporter
) -> None:
    queue = make_queue(concurrency=1)
    _tasks(queue)

    async with queue:
        job = await queue.client.enqueue("add", {"a": 1, "b": 2})
        await queue.client.wait(job.id, timeout=DEADLINE)
        assert await _stored_context(queue, job.id) is None

    assert queue._tracing is None
    assert exporter.get_finished_spans() == ()


def test_without_the_api_a_provider_traces_nothing(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)

    assert tracing.build(provider) is None


async def test_a_periodic_tick_is_sent_by_every_racer_and_linked_from_its_attempt(
    make_queue: Callable[..., EQueue],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    # Two queues on one database race for each tick, as two processes would: each opens a send
    # span, and the one whose insert won says so; the attempt links to the winner's span.
    start = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC)
    clocks = [ManualClock(start), ManualClock(start)]
    queues = [
        make_queue(clock=clock, concurrency=1, stalled_after=86_400.0, tracer_provider=provider)
        for clock in clocks
    ]
    for queue in queues:
        _tasks(queue)
        queue.periodic("* * * * *", "add", {"a": 1, "b": 1}, name="every-minute")

    def dealt_with(tick: datetime) -> Callable[[], Awaitable[bool]]:
        async def probe() -> bool:
            return all(
                q.runtime is not None
                and q.runtime.scheduler is not None
                and q.runtime.scheduler.checked.get("every-minute") == tick
                for q in queues
            )

        return probe

    async def processed() -> ReadableSpan | None:
        consumers = _spans(exporter, SpanKind.CONSUMER)
        return consumers[0] if consumers else None

    async with queues[0], queues[1]:
        await eventually(dealt_with(start.replace(second=0)), timeout=DEADLINE)
        for clock in clocks:
            clock.advance(timedelta(minutes=1))
        # Both raced for the tick (one inserted its job), and the job ran.
        await eventually(dealt_with(start.replace(second=0) + timedelta(minutes=1)))
        consumer = await eventually(processed, timeout=DEADLINE)
        job_id = str((consumer.attributes or {})["messaging.message.id"])
        stored = await _stored_context(queues[0], job_id)

    sends = _spans(exporter, SpanKind.PRODUCER)
    assert [dict(s.attributes or {})["messaging.fastapi_equeue.schedule"] for s in sends] == [
        "every-minute",
        "every-minute",
    ]
    won = [s for s in sends if (s.attributes or {})[tracing.ENQUEUED] is True]
    lost = [s for s in sends if (s.attributes or {})[tracing.ENQUEUED] is False]
    assert (len(won), len(lost)) == (1, 1)
    assert won[0].context is not None
    assert stored is not None
    assert stored["traceparent"] == _traceparent(won[0].context)
    assert [_ids(link.context) for link in consumer.links] == [_ids(won[0].context)]
