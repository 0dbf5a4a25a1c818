"""A dependency that fails cancels the jobs waiting for it, and theirs, naming the culprit."""

from fastapi_equeue import EQueue, JobStatus, UnknownDependency

NO_SUCH_JOB = "0190f5a8-8f1e-7000-8000-000000000000"


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)

    @queue.task(max_attempts=1)
    async def charge(order_id: int) -> None:
        raise RuntimeError("card declined")

    @queue.task
    async def ship(order_id: int) -> str:
        return "shipped"

    async with queue:
        client = queue.client
        charged = await client.enqueue("charge", {"order_id": 7})
        shipped = await client.enqueue("ship", {"order_id": 7}, depends_on=[charged])

        ended = await client.wait(shipped.id, timeout=10)
        assert ended.status is JobStatus.CANCELLED
        assert ended.last_error == f"DependencyFailed: job {charged.id} ended failed"

        # A dependency that does not exist is refused, and nothing is stored.
        refused = None
        try:
            await client.enqueue("ship", {"order_id": 8}, depends_on=[NO_SUCH_JOB])
        except UnknownDependency as exc:  # answered 422 over HTTP
            refused = exc
        assert refused is not None
        assert refused.job_ids == [NO_SUCH_JOB]
        assert len((await client.list(job_type="ship")).items) == 1
