"""OpenTelemetry traces of one ``EQueue``: a span per enqueued job and a span per attempt.

Enqueueing a job opens ``send {queue}`` (kind PRODUCER), a child of whatever span is current
(the request's, with FastAPI instrumented), and stores its W3C trace context with the job
(``trace_context``); so does a periodic schedule's tick, in each process that races for it.
Each attempt runs in ``process {queue}`` (kind CONSUMER), the root of a trace of its own with a
*link* to the stored context: a job may run hours after its request ended, which the messaging
semantic conventions answer with a link rather than a parent. The task's own spans nest under
the attempt's.

``opentelemetry-api`` is optional (``pip install fastapi-equeue[otel]``) and imported only here,
when a queue is given a tracer provider; without one (or without the API) ``build`` returns
``None``, the queue traces nothing and the column stays NULL.

Example:
    >>> from opentelemetry import trace
    >>> queue = EQueue(url, tracer_provider=trace.get_tracer_provider())
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from fastapi_equeue.backend import JobInsertParams, JobRow

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

SYSTEM = "fastapi_equeue"
"""``messaging.system`` of every span."""
ENQUEUED = "messaging.fastapi_equeue.enqueued"
"""On the send span of a periodic job: whether this process inserted it (another may have)."""


def build(tracer_provider: "TracerProvider | None") -> "Tracing | None":
    """The tracing of a queue given ``tracer_provider``; ``None`` (trace nothing) without one,
    or when ``opentelemetry`` cannot be imported."""
    if tracer_provider is None:
        return None
    try:
        import opentelemetry.trace  # noqa: F401  (optional: only to know it is there)
    except ImportError:
        return None
    return Tracing(tracer_provider)


class Tracing:
    """Opens the spans of one queue's jobs with one tracer provider."""

    def __init__(self, tracer_provider: "TracerProvider") -> None:
        from opentelemetry import context, propagate, trace

        from fastapi_equeue import __version__

        self._tracer = tracer_provider.get_tracer(SYSTEM, __version__)
        self._trace = trace
        self._propagate = propagate
        self._context = context

    @contextmanager
    def sending(self, params: Sequence[JobInsertParams]) -> Iterator[list[JobInsertParams]]:
        """Open a PRODUCER span per job (children of the current span) while the block inserts
        the jobs it yields: ``params`` with each span's context to store. A block that raises
        marks every span failed."""
        started = [self._send(p) for p in params]
        try:
            yield [traced for _, traced in started]
        except BaseException as exc:
            for span, _ in started:
                _failed(span, exc)
            raise
        finally:
            for span, _ in started:
                span.end()

    @contextmanager
    def sending_tick(
        self, job: JobInsertParams, schedule: str
    ) -> Iterator[tuple[JobInsertParams, Callable[[bool], None]]]:
        """``sending`` for the job of a periodic schedule's tick, which every process racing
        for the tick tries to insert and one does: the block calls the function it gets with
        whether this process inserted the job, and the span says so
        (``messaging.fastapi_equeue.enqueued``)."""
        span, traced = self._send(job, {"messaging.fastapi_equeue.schedule": schedule})
        try:
            yield traced, lambda inserted: span.set_attribute(ENQUEUED, inserted)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    def _send(
        self, p: JobInsertParams, attributes: Mapping[str, str] | None = None
    ) -> tuple["Span", JobInsertParams]:
        span = self._tracer.start_span(
            f"send {p.queue}",
            kind=self._trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "enqueue",
                "messaging.destination.name": p.queue,
                "messaging.message.id": p.id,
                "messaging.fastapi_equeue.job_type": p.job_type,
                **(attributes or {}),
            },
        )
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier, context=self._trace.set_span_in_context(span))
        return span, replace(p, trace_context=carrier or None)

    @contextmanager
    def processing(self, job: JobRow) -> Iterator[None]:
        """Run the block (one attempt of ``job``) in a CONSUMER span, current meanwhile: the
        root of a new trace, linked to the span that enqueued the job when it was traced."""
        links = []
        if job.trace_context:
            producer = self._trace.get_current_span(self._propagate.extract(job.trace_context))
            if producer.get_span_context().is_valid:
                links.append(self._trace.Link(producer.get_span_context()))
        with self._tracer.start_as_current_span(
            f"process {job.queue}",
            context=self._context.Context(),  # a new root, whatever is current
            kind=self._trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "messaging.fastapi_equeue.job_type": job.job_type,
                "messaging.fastapi_equeue.attempt": job.attempts,
            },
            record_exception=False,
            set_status_on_exception=False,
        ):
            yield

    def failed(self, exc: BaseException) -> None:
        """Mark the current attempt's span failed by ``exc`` (the executor calls this where
        it turns the exception into the attempt's outcome, inside ``processing``)."""
        _failed(self._trace.get_current_span(), exc)


def _failed(span: "Span", exc: BaseException) -> None:
    from opentelemetry.trace import StatusCode

    # The class name: low cardinality, as error.type must be (the message is in the event).
    span.set_attribute("error.type", type(exc).__name__)
    span.record_exception(exc)
    span.set_status(StatusCode.ERROR, type(exc).__name__)
