"""Generator dependencies clean up when the attempt ends, whatever its outcome; dependencies
nest, take the ``JobContext``, and are resolved again for each attempt."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends

from fastapi_equeue import EQueue, JobContext

log: list[str] = []


def get_settings() -> dict[str, str]:
    return {"bucket": "invoices"}


def transaction(
    ctx: JobContext, settings: Annotated[dict[str, str], Depends(get_settings)]
) -> Iterator[str]:
    name = f"{settings['bucket']}, attempt {ctx.attempt}"
    log.append(f"begin {name}")
    try:
        yield name
    except Exception:
        log.append(f"rollback {name}")  # the attempt failed: the error is raised here
        raise
    log.append(f"commit {name}")


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)

    @queue.task(max_attempts=2, retry_delay=0)
    def archive(invoice_id: int, tx: Annotated[str, Depends(transaction)], ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("storage unavailable")
        return f"invoice {invoice_id} archived in {tx}"

    async with queue:
        job = await queue.client.enqueue("archive", {"invoice_id": 7})
        done = await queue.client.wait(job.id, timeout=10)

    assert done.result == "invoice 7 archived in invoices, attempt 2"
    assert log == [
        "begin invoices, attempt 1",
        "rollback invoices, attempt 1",
        "begin invoices, attempt 2",
        "commit invoices, attempt 2",
    ]
