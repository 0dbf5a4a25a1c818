"""``GET /jobs/metrics``: counters and histograms from one queue's events, gauges from its
database, a registry per ``EQueue``, the router's dependencies, and 501 without
prometheus_client."""

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from prometheus_client.parser import text_string_to_metric_families

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, events
from fastapi_equeue.backend import MetricsSnapshot, QueueBacklogRow
from fastapi_equeue.metrics import QueueMetrics
from fastapi_equeue.testing import ManualClock

DEADLINE = 10.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _app(queue: EQueue, **include: object) -> FastAPI:
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router, **include)  # type: ignore[arg-type]
    return app


def _http(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/jobs/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def _workload_tasks(queue: EQueue) -> None:
    @queue.task
    async def ok(n: int) -> int:
        return n

    @queue.task(max_attempts=2, retry_delay=0)
    async def boom() -> None:
        raise ValueError("no")

    @queue.task(queue="held")
    async def later() -> None: ...


async def test_a_known_workload_is_counted_timed_and_gauged(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=2)
    _workload_tasks(queue)
    app = _app(queue)

    async with queue.lifespan(app), _http(app) as http:
        client = queue.client
        await client.pause_queue("held")
        held_since = time.monotonic()
        held = [await client.enqueue("later") for _ in range(4)]
        await client.cancel(held[0].id)
        with queue.events.record(events.JobCompleted, events.JobFailed) as seen:
            for n in range(5):
                await client.enqueue("ok", {"n": n})
            for _ in range(2):
                await client.enqueue("boom")
            await seen.wait_count(7, timeout=DEADLINE)
        await queue.events.close()  # every event sent so far has reached the metrics
        samples = await scrape(http)
        held_for = time.monotonic() - held_since

    def counted(name: str, **labels: str) -> float | None:
        return value(samples, name, **labels)

    assert counted("equeue_jobs_enqueued_total", queue="default", job_type="ok") == 5
    assert counted("equeue_jobs_enqueued_total", queue="default", job_type="boom") == 2
    assert counted("equeue_jobs_enqueued_total", queue="held", job_type="later") == 4
    finished = {
        (dict(labels)["job_type"], dict(labels)["outcome"]): count
        for (name, labels), count in samples.items()
        if name == "equeue_jobs_finished_total"
    }
    assert finished == {
        ("ok", "completed"): 5,
        ("boom", "retrying"): 2,
        ("boom", "failed"): 2,
        ("later", "cancelled"): 1,
    }
    for job_type, attempts in (("ok", 5), ("boom", 4)):
        labels = {"queue": "default", "job_type": job_type}
        assert counted("equeue_job_duration_seconds_count", **labels) == attempts
        assert counted("equeue_job_wait_seconds_count", **labels) == attempts
        assert counted("equeue_job_duration_seconds_bucket", **labels, le="+Inf") == attempts
    # The cancelled job never ran: no run time, no wait.
    assert counted("equeue_job_duration_seconds_count", queue="held", job_type="later") is None
    assert counted("equeue_queue_backlog", queue="held") == 3
    assert counted("equeue_queue_paused", queue="held") == 1
    oldest = counted("equeue_queue_oldest_job_age_seconds", queue="held")
    assert oldest is not None
    assert 0 < oldest <= held_for
    # Nothing of the default queue can run any more, and it has no settings: no gauge.
    assert counted("equeue_queue_backlog", queue="default") is None
    assert counted("equeue_workers") == 1


async def test_two_queues_in_one_process_count_apart(
    make_queue: Callable[..., EQueue],
) -> None:
    first, second = make_queue(concurrency=0), make_queue(concurrency=0)
    for queue in (first, second):
        _workload_tasks(queue)

    async with first, second:
        for _ in range(2):
            await first.client.enqueue("ok", {"n": 1})
        await second.client.enqueue("ok", {"n": 2})
        await first.events.close()
        await second.events.close()
        assert first.metrics is not None
        assert second.metrics is not None
        assert first.metrics.registry is not second.metrics.registry
        texts = [(await queue.metrics.render())[0].decode() for queue in (first, second)]  # type: ignore[union-attr]

    counts = [
        value(parse(text), "equeue_jobs_enqueued_total", queue="default", job_type="ok")
        for text in texts
    ]
    assert counts == [2, 1]


async def test_the_route_is_behind_the_routers_dependencies(
    make_queue: Callable[..., EQueue],
) -> None:
    async def operators_only(x_token: str | None = Header(default=None)) -> None:
        if x_token != "ops":
            raise HTTPException(status_code=403, detail="operators only")

    queue = make_queue(concurrency=0)
    app = _app(queue, dependencies=[Depends(operators_only)])

    async with queue.lifespan(app), _http(app) as http:
        refused = await http.get("/jobs/metrics")
        allowed = await http.get("/jobs/metrics", headers={"X-Token": "ops"})
        openmetrics = await http.get(
            "/jobs/metrics",
            headers={"X-Token": "ops", "Accept": "application/openmetrics-text; version=1.0.0"},
        )

    assert refused.status_code == 403
    assert "equeue_" not in refused.text
    assert allowed.status_code == 200
    assert "equeue_workers 0.0" in allowed.text
    assert openmetrics.status_code == 200
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


async def test_without_prometheus_client_the_route_answers_501(
    make_queue: Callable[..., EQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    queue = make_queue(concurrency=0)
    app = _app(queue)

    async with queue.lifespan(app), _http(app) as http:
        response = await http.get("/jobs/metrics")

    assert queue.metrics is None
    assert response.status_code == 501
    assert "fastapi-equeue[metrics]" in response.json()["detail"]


async def test_the_database_is_read_at_most_once_per_snapshot_ttl() -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    reads: list[int] = []

    async def snapshot() -> MetricsSnapshot:
        reads.append(len(reads) + 1)
        row = QueueBacklogRow(queue="q", paused=False, backlog=len(reads), oldest_age=None)
        return MetricsSnapshot(queues=(row,), workers=0)

    metrics = QueueMetrics(events.EventBus(), clock, snapshot, snapshot_ttl=5)
    first = parse((await metrics.render())[0].decode())
    clock.advance(4.9)
    cached = parse((await metrics.render())[0].decode())
    clock.advance(0.2)
    fresh = parse((await metrics.render())[0].decode())
    metrics.subscription.cancel()

    assert reads == [1, 2]
    assert value(first, "equeue_queue_backlog", queue="q") == 1
    assert value(cached, "equeue_queue_backlog", queue="q") == 1
    assert value(fresh, "equeue_queue_backlog", queue="q") == 2
    assert value(fresh, "equeue_queue_oldest_job_age_seconds", queue="q") == 0
