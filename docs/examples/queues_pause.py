"""Pausing a queue: it accepts jobs and starts none, in every worker, until it is resumed."""

from fastapi_equeue import EQueue, JobStatus


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)

    @queue.task(queue="emails")
    async def send_email(to: str) -> str:
        return f"sent to {to}"

    async with queue:
        client = queue.client
        info = await client.pause_queue("emails")
        assert info.paused

        job = await client.enqueue("send_email", {"to": "a@example.com"})
        # Accepted, and waiting: no worker starts a job of a paused queue.
        assert (await client.get(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]

        await client.resume_queue("emails")
        done = await client.wait(job.id, timeout=10)
        assert done.result == "sent to a@example.com"
