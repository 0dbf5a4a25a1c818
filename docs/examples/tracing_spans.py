"""Tracing: the request's span leads to the job it enqueued, and its attempt links back."""

from typing import Annotated

import httpx
from fastapi import Depends, FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, events


async def main(database_url: str) -> None:
    exporter = InMemorySpanExporter()  # in production: an OTLP exporter
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    # In production: tracer_provider=opentelemetry.trace.get_tracer_provider()
    queue = EQueue(database_url, concurrency=1, poll_interval=0.1, tracer_provider=provider)

    @queue.task
    async def send_receipt(order_id: int) -> None:
        with tracer.start_as_current_span("render receipt"):  # nests under the attempt's span
            pass

    app = FastAPI(lifespan=queue.lifespan)

    @app.post("/orders/{order_id}")
    async def place_order(
        order_id: int, jobs: Annotated[equeue.QueueClient, Depends(equeue.get_queue)]
    ) -> dict[str, str]:
        # FastAPI's instrumentation opens this span for you; here the example opens it.
        with tracer.start_as_current_span("POST /orders"):
            job = await jobs.enqueue("send_receipt", {"order_id": order_id})
        return {"job_id": job.id}

    transport = httpx.ASGITransport(app=app)
    async with queue.lifespan(app), httpx.AsyncClient(transport=transport) as http:
        with queue.events.record(events.JobCompleted) as done:
            job_id = (await http.post("http://app/orders/7")).json()["job_id"]
            await done.wait_for(lambda e: e.job_id == job_id, timeout=10)

    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, send = spans["POST /orders"], spans["send default"]
    process, render = spans["process default"], spans["render receipt"]
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert dict(send.attributes or {})["messaging.message.id"] == job_id
    assert dict(process.attributes or {})["messaging.fastapi_equeue.attempt"] == 1
    # The enqueue is a child of the request: the request's trace leads to the job.
    assert parent_id(send) == request.context.span_id
    # The attempt starts a trace of its own, linked to the enqueue; the task's spans nest in it.
    assert process.parent is None
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert parent_id(render) == process.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None
