"""A job enqueued on a started queue runs and stores its result, on both backends."""

from collections.abc import Callable

from fastapi_equeue import EQueue, JobStatus


async def test_enqueued_job_runs_and_stores_result(make_queue: Callable[..., EQueue]) -> None:
    queue = make_queue()

    @queue.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with queue:
        job = await queue.client.enqueue("add", {"a": 2, "b": 3})
        done = await queue.client.wait(job.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert done.result == 5
    assert done.attempts == 1
