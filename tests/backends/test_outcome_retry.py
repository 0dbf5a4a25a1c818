"""An outcome written again after its first write's answer was lost: the fence refuses it, and
the store reads the job back to tell an outcome that landed from one that was superseded."""

import pytest

from fastapi_equeue import events
from fastapi_equeue.backend import Backend, JobCompleteParams
from fastapi_equeue.clock import SystemClock
from fastapi_equeue.jobs import JobStatus
from fastapi_equeue.store import Attempt, Store
from tests.backends.factory import error_for, outcome, rescue, start_job

DEADLINE = 5.0


async def write_twice(
    backend: Backend, params: JobCompleteParams, *, retried: bool
) -> tuple[set[str], list[events.Event]]:
    """Write ``params`` once (it lands), then again as a retry would, recording the events
    of the second write."""
    bus = events.EventBus()
    store = Store(backend, bus, SystemClock())
    row = await backend.job_get(params.id)
    assert row is not None
    attempt = Attempt(job=row, outcome=params, duration=0.1)
    await store.complete([attempt])
    with bus.record(events.JobEvent) as seen:
        written = await store.complete([attempt], retried=retried)
        await bus.close()
    return written, seen.events


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (JobStatus.COMPLETED, events.JobCompleted),
        (JobStatus.RETRYING, events.JobRetrying),
        (JobStatus.FAILED, events.JobFailed),
    ],
)
async def test_a_retried_outcome_that_had_landed_counts_as_written(
    backend: Backend, status: JobStatus, event: type[events.Event]
) -> None:
    job = await start_job(backend)
    error = None if status is JobStatus.COMPLETED else error_for(1, "ValueError: no")
    params = outcome(job, status.value, error=error, result=1)

    written, seen = await write_twice(backend, params, retried=True)

    assert written == {job.id}
    assert [type(e) for e in seen] == [event]


async def test_without_a_retry_a_refused_outcome_is_discarded(backend: Backend) -> None:
    job = await start_job(backend)

    written, seen = await write_twice(backend, outcome(job, "completed"), retried=False)

    assert written == set()
    assert [type(e) for e in seen] == [events.JobOutcomeDiscarded]


async def test_a_retried_outcome_the_rescuer_superseded_is_still_discarded(
    backend: Backend,
) -> None:
    job = await start_job(backend)
    assert job.worker_id is not None
    await backend.worker_deregister(job.worker_id)  # its worker is gone: the rescuer takes it
    assert [row.id for row in await rescue(backend)] == [job.id]
    bus = events.EventBus()
    store = Store(backend, bus, SystemClock())
    late = outcome(job, "retrying", error=error_for(1, "ValueError: too late"))

    with bus.record(events.JobEvent) as seen:
        written = await store.complete([Attempt(job=job, outcome=late, duration=0.1)], retried=True)
        await bus.close()

    assert written == set()
    assert [type(e) for e in seen.events] == [events.JobOutcomeDiscarded]
