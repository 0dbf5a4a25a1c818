"""Lifecycle logging: the queue's events as log lines, each naming its job, worker or queue.

A subscriber like any other, attached by every ``EQueue``. Job lines go to the
``fastapi_equeue.jobs`` logger, worker lines to ``fastapi_equeue.worker`` and queue lines to
``fastapi_equeue.queues``; each record also carries the event's fields as attributes
(``job_id``, ``job_type``, ``queue``, ``attempt``, ``status``, ``duration``) for log processors.
An event is sent to it only when its line would be logged.
"""

import logging

from fastapi_equeue import events

jobs_logger = logging.getLogger("fastapi_equeue.jobs")
worker_logger = logging.getLogger("fastapi_equeue.worker")
queues_logger = logging.getLogger("fastapi_equeue.queues")

_WARNING = (
    events.JobRetrying,
    events.JobFailed,
    events.JobRescued,
    events.JobOutcomeDiscarded,
    events.WorkerLost,
)


def attach(bus: events.EventBus) -> events.Subscription:
    """Log ``bus``'s events from now on (those whose line the logging setup would keep)."""
    return bus.subscribe(log_event, when=_enabled, when_kind=_kind_enabled)


def level(event: events.Event) -> int:
    """The level ``event`` is logged at."""
    if isinstance(event, events.JobProgress):
        return logging.DEBUG
    if isinstance(event, _WARNING):
        return logging.WARNING
    if isinstance(event, events.JobRequeued) and event.reason == "not_received":
        return logging.WARNING
    return logging.INFO


async def log_event(event: events.Event) -> None:
    """Log one event (an ``async`` subscriber: logging stays on the event loop, as before)."""
    if isinstance(event, events.JobEvent):
        _log_job(event)
    elif isinstance(event, events.WorkerEvent):
        _log_worker(event)
    elif isinstance(event, events.QueueEvent):
        _log_queue(event)
    elif isinstance(event, events.JobsPruned):
        counts = ", ".join(f"{status}={n}" for status, n in sorted(event.counts.items()))
        jobs_logger.info("pruned %d finished jobs (%s)", sum(event.counts.values()), counts)


def _enabled(event: events.Event) -> bool:
    return _logger_of(type(event)).isEnabledFor(level(event))


def _kind_enabled(kind: type[events.Event]) -> bool:
    # The lowest level an event of this kind may be logged at (a requeue can be a warning).
    least = logging.WARNING if issubclass(kind, (*_WARNING, events.JobRequeued)) else logging.INFO
    if issubclass(kind, events.JobProgress):
        least = logging.DEBUG
    return _logger_of(kind).isEnabledFor(least)


def _logger_of(kind: type[events.Event]) -> logging.Logger:
    if issubclass(kind, events.WorkerEvent):
        return worker_logger
    if issubclass(kind, events.QueueEvent):
        return queues_logger
    return jobs_logger


def _log_job(event: events.JobEvent) -> None:
    what, status, detail = _describe(event)
    duration = getattr(event, "duration", None)
    timing = f" duration={duration:.3f}s" if duration is not None else ""
    jobs_logger.log(
        level(event),
        "%s id=%s type=%s queue=%s attempt=%d%s%s",
        what,
        event.job_id,
        event.job_type,
        event.queue,
        event.attempt,
        timing,
        detail,
        extra={
            "job_id": event.job_id,
            "job_type": event.job_type,
            "queue": event.queue,
            "attempt": event.attempt,
            "duration": duration,
            "status": status,
        },
    )


def _describe(event: events.JobEvent) -> tuple[str, str, str]:
    """What happened, the job's status after it, and anything more to say."""
    match event:
        case events.JobEnqueued():
            return "job queued", "queued", ""
        case events.JobStarted():
            return "job processing", "processing", ""
        case events.JobCompleted():
            return "job completed", "completed", ""
        case events.JobRetrying():
            return "job retrying", "retrying", f" in={event.retry_in:.3f}s error={event.error!r}"
        case events.JobFailed():
            return "job failed", "failed", f" error={event.error!r}"
        case events.JobCancelled():
            return "job cancelled", "cancelled", ""
        case events.JobCancelRequested():
            return "job cancel requested", "processing", ""
        case events.JobProgress():
            message = f" message={event.message!r}" if event.message is not None else ""
            return "job progress", "processing", f" fraction={event.fraction:.3f}{message}"
        case events.JobRequeued(reason="retry"):
            return "job queued for a manual retry", "queued", ""
        case events.JobRequeued(reason="not_received"):
            return "job claimed but never received, queued again", "queued", ""
        case events.JobRequeued():
            return "job interrupted by shutdown, queued again", "queued", ""
        case events.JobRescued():
            return "job rescued from a lost worker", str(event.status), f" now={event.status}"
        case events.JobOutcomeDiscarded():
            return (
                "job outcome discarded: the job was taken back from this worker",
                "processing",
                "",
            )
    return type(event).__name__, "", ""


def _log_worker(event: events.WorkerEvent) -> None:
    match event:
        case events.WorkerStarted():
            worker_logger.info(
                "worker %s started with concurrency %d on queues %s",
                event.worker_id,
                event.concurrency,
                ",".join(event.queues) if event.queues else "all",
            )
        case events.WorkerLost(ours=True):
            worker_logger.warning(
                "worker %s was declared lost; abandoning its running attempts", event.worker_id
            )
        case events.WorkerLost():
            worker_logger.warning("worker %s went silent and was declared lost", event.worker_id)
        case events.WorkerStopped():
            worker_logger.info("worker %s stopped", event.worker_id)


def _log_queue(event: events.QueueEvent) -> None:
    match event:
        case events.QueuePaused():
            queues_logger.info("queue %s paused", event.queue)
        case events.QueueResumed():
            queues_logger.info("queue %s resumed", event.queue)
        case events.QueueLimitsChanged():
            queues_logger.info(
                "queue %s limits: concurrency=%s rate=%s",
                event.queue,
                event.concurrency,
                event.rate,
            )
