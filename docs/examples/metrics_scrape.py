"""Scraping GET /jobs/metrics: counters from this process's events, gauges from the database."""

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, events


async def main(database_url: str) -> None:
    queue = EQueue(database_url, concurrency=2, poll_interval=0.1)

    @queue.task
    async def resize(image_id: int) -> int:
        return image_id

    @queue.task(queue="reports")
    async def report() -> None: ...

    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)  # in production: dependencies=[Depends(your_auth)]
    transport = httpx.ASGITransport(app=app)

    async with queue.lifespan(app), httpx.AsyncClient(transport=transport) as http:
        with queue.events.record(events.JobCompleted) as done:
            for image_id in range(3):
                await queue.client.enqueue("resize", {"image_id": image_id})
            await done.wait_count(3, timeout=10)
        await queue.client.pause_queue("reports")
        await queue.client.enqueue("report")
        await queue.events.close()  # let the metrics take every event sent so far

        response = await http.get("http://app/jobs/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (point.name, frozenset(point.labels.items())): point.value
        for family in text_string_to_metric_families(response.text)
        for point in family.samples
    }

    def sample(name: str, **labels: str) -> float:
        return samples[name, frozenset(labels.items())]

    # Counted by this process, from its events:
    resize_jobs = {"queue": "default", "job_type": "resize"}
    assert sample("equeue_jobs_enqueued_total", **resize_jobs) == 3
    assert sample("equeue_jobs_finished_total", **resize_jobs, outcome="completed") == 3
    assert sample("equeue_job_duration_seconds_count", **resize_jobs) == 3
    # Read from the database: one job waits in the paused "reports" queue; one worker is alive.
    assert sample("equeue_queue_backlog", queue="reports") == 1
    assert sample("equeue_queue_paused", queue="reports") == 1
    assert sample("equeue_workers") == 1
