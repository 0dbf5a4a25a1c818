"""A diamond in one call: fetch, then parse and thumbnail side by side, then publish."""

from fastapi_equeue import EQueue, JobStatus


async def main(database_url: str) -> None:
    queue = EQueue(database_url, poll_interval=0.1)
    finished: list[str] = []

    @queue.task
    async def step(name: str) -> str:
        finished.append(name)
        return name

    async with queue:
        fetch, parse, thumbnail, publish = await queue.client.enqueue_many(
            [
                {"job_type": "step", "payload": {"name": "fetch"}},
                # An index names an earlier item of the same call.
                {"job_type": "step", "payload": {"name": "parse"}, "depends_on": [0]},
                {"job_type": "step", "payload": {"name": "thumbnail"}, "depends_on": [0]},
                {"job_type": "step", "payload": {"name": "publish"}, "depends_on": [1, 2]},
            ]
        )
        assert parse.depends_on == [fetch.id]
        assert publish.depends_on == [parse.id, thumbnail.id]

        done = await queue.client.wait(publish.id, timeout=10)
        assert done.status is JobStatus.COMPLETED
        assert finished[0] == "fetch"
        assert finished[-1] == "publish"
