"""Start while the database is down: the app starts and answers 503 where it needs the
database, a standalone worker waits (retrying with capped, jittered backoff, one log line per try)
instead of exiting, and work begins within seconds once the database answers.

The database is "down" behind the TCP proxy in ``refuse()`` mode (new connections refused, as by
a server that is not running), or, in one test, because the throwaway cluster is really stopped.
The subprocesses run ``down_app`` (this folder on ``PYTHONPATH``) against a fresh, unmigrated
database, so the migrations too wait for the database. Every wait polls against a deadline.
"""

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from fastapi_equeue import DatabaseUnavailable, Job, JobStatus, QueueClient
from fastapi_equeue.api.http_errors import UNAVAILABLE
from fastapi_equeue.testing import eventually
from tests.faults.cluster import ThrowawayCluster
from tests.faults.down_app import build_queue
from tests.faults.harness import HOST, database_of, free_port
from tests.faults.proxy import TcpProxy
from tests.process.conftest import Worker, Workers, until

APP_DIR = Path(__file__).parent
# Python, the package and (for uvicorn) FastAPI import before the first try: slow on a busy box.
START_TIMEOUT = 30.0
# The backoff doubles from 0.5 s, jittered 0.75-1.0: tries at about 0, 0.5, 1.5, 3.5 and 7.5 s.
# The database comes back once try 4 is logged, so try 5 (3-4 s later) reaches it: allow 10 s.
UP_TRY = 4
REACH_TIMEOUT = 10.0
JOB_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
FIRST_BACKOFF = 0.5
# A sleep overruns on a loaded machine; a refused connect takes a millisecond.
LATE_SLACK = 1.0
EARLY_SLACK = 0.05

OUTAGE = "the job database is unavailable"
FIRST_TRY = re.compile(
    r"^(?P<at>\S+ \S+) WARNING fastapi_equeue: the job database is unavailable \(.+\); "
    r"the queue starts without it and keeps trying$"
)
NEXT_TRY = re.compile(
    r"^(?P<at>\S+ \S+) WARNING fastapi_equeue: the job database is unavailable \(.+\); "
    r"try (?P<n>\d+), next in about (?P<next>[\d.]+)s$"
)
REACHED = re.compile(r" INFO fastapi_equeue: reached the job database after (?P<after>[\d.]+)s$")
TIMESTAMP = "%Y-%m-%d %H:%M:%S,%f"


def start_down_app(workers: Workers, name: str, command: list[str], database_url: str) -> Worker:
    """Start ``python -m *command`` on ``down_app`` in a session of its own (so that teardown
    kills its children too)."""
    env = {"EQUEUE_URL": database_url}
    return workers.spawn(name, ["-m", *command], env=env, app_dir=APP_DIR, session=True)


def start_worker(workers: Workers, database_url: str) -> Worker:
    """``python -m fastapi_equeue.worker down_app:queue``."""
    command = ["fastapi_equeue.worker", "down_app:queue"]
    return start_down_app(workers, "worker", command, database_url)


def start_uvicorn(workers: Workers, database_url: str, port: int) -> Worker:
    """``uvicorn down_app:app`` (one process, running in-process workers)."""
    command = ["uvicorn", "down_app:app", "--host", HOST, "--port", str(port)]
    return start_down_app(workers, "uvicorn", command, database_url)


async def until_alive(
    spawned: Worker, condition: Callable[[], bool | Awaitable[bool]], *, what: str, timeout: float
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` or if ``spawned`` exits."""
    await until(condition, what=what, timeout=timeout, watch=[spawned], report=spawned.output)


async def logged_try(spawned: Worker, n: int) -> None:
    """Wait until ``spawned`` has logged its ``n``-th failed try."""

    def logged() -> bool:
        return len(outage_tries(spawned.text().splitlines())) >= n

    await until_alive(spawned, logged, what=f"outage try {n} to be logged", timeout=START_TIMEOUT)


@pytest.fixture
def refused_url(cluster_db: str, tcp_proxy: TcpProxy) -> str:
    """``cluster_db`` through the proxy, which refuses connections until ``heal()``."""
    tcp_proxy.refuse()
    return tcp_proxy.url_for(database_of(cluster_db))


@contextlib.asynccontextmanager
async def enqueuer(url: str) -> AsyncIterator[QueueClient]:
    """An enqueue-only queue (no workers) with ``down_app``'s task, on a database that is up."""
    async with build_queue(url, concurrency=0) as queue:
        yield queue.client


# -- reading the logs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Try:
    number: int
    at: datetime


def outage_tries(lines: list[str]) -> list[Try]:
    """The failed tries the queue logged, in order: the first line, then ``try N`` lines."""
    tries = []
    for line in lines:
        if first := FIRST_TRY.match(line):
            tries.append(Try(1, datetime.strptime(first["at"], TIMESTAMP)))
        elif later := NEXT_TRY.match(line):
            tries.append(Try(int(later["n"]), datetime.strptime(later["at"], TIMESTAMP)))
    return tries


def check_backoff(spawned: Worker) -> list[float]:
    """Every outage line is one try, numbered 1, 2, 3...; the gaps between tries follow the
    backoff (0.5 s doubling, jittered 0.75-1.0), so each is longer than the one before. Returns
    the gaps, in seconds."""
    lines = spawned.text().splitlines()
    tries = outage_tries(lines)
    assert tries, spawned.output()
    assert [t.number for t in tries] == list(range(1, len(tries) + 1)), spawned.output()
    # No other line speaks of the outage: one line per try.
    assert sum(OUTAGE in line for line in lines) == len(tries), spawned.output()
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(tries)]
    for k, gap in enumerate(gaps):
        backoff = FIRST_BACKOFF * 2**k
        assert 0.75 * backoff - EARLY_SLACK <= gap <= backoff + LATE_SLACK, (k, gaps)
    assert gaps == sorted(gaps), gaps
    return gaps


def reached_after(spawned: Worker) -> float:
    """The ``reached the job database after X.Xs`` figure (the line must be there)."""
    found = [m for line in spawned.text().splitlines() if (m := REACHED.search(line))]
    assert len(found) == 1, spawned.output()
    return float(found[0]["after"])


def assert_no_traceback(spawned: Worker) -> None:
    assert "Traceback" not in spawned.text(), spawned.output()
    assert " ERROR " not in spawned.text(), spawned.output()


def report(**figures: object) -> None:
    """Figures the run observed, printed for ``pytest -s`` (and shown with a failure)."""
    print("start-while-down:", ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- in process ------------------------------------------------------------------------------


async def test_queue_started_while_refused_runs_jobs_once_the_database_answers(
    refused_url: str, tcp_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_equeue")
    queue = build_queue(refused_url, concurrency=2, poll_interval=0.05, heartbeat_interval=0.2)

    async with asyncio.timeout(START_TIMEOUT), queue:
        with pytest.raises(DatabaseUnavailable) as refused:
            await queue.client.enqueue("record", {"token": "too-early"})
        assert isinstance(refused.value, ConnectionError)
        assert str(refused.value).startswith(OUTAGE)
        with pytest.raises(DatabaseUnavailable):
            await queue.client.list()

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(tcp_proxy.heal)
        up = loop.time()

        async def enqueued() -> Job | None:
            try:
                return await queue.client.enqueue("record", {"token": "after"})
            except DatabaseUnavailable:
                return None

        job = await eventually(enqueued, timeout=REACH_TIMEOUT)
        done = await queue.client.wait(job.id, timeout=JOB_TIMEOUT)
        completed_after = loop.time() - up

    assert done.status is JobStatus.COMPLETED
    assert done.result == os.getpid()
    messages = [r.getMessage() for r in caplog.records if r.name == "fastapi_equeue"]
    assert any(m.endswith("the queue starts without it and keeps trying") for m in messages)
    assert any(m.startswith("applied migrations") for m in messages), messages
    assert any(m.startswith("reached the job database after") for m in messages), messages
    report(test="in-process", up_to_completed=f"{completed_after:.2f}s", log=messages)


# -- uvicorn ---------------------------------------------------------------------------------


@pytest.mark.process
async def test_app_started_while_down_answers_503_then_runs_jobs(
    refused_url: str, tcp_proxy: TcpProxy, workers: Workers
) -> None:
    port = free_port()
    server = start_uvicorn(workers, refused_url, port)
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=5) as http:

        async def docs_served() -> bool:
            try:
                return (await http.get("/docs")).status_code == 200
            except httpx.TransportError:
                return False

        await until_alive(server, docs_served, what="the app to serve /docs", timeout=START_TIMEOUT)
        assert "Application startup complete" in server.text(), server.output()
        assert (await http.get("/openapi.json")).status_code == 200

        for method, path, body in (
            ("GET", "/jobs", None),
            ("POST", "/jobs", {"job_type": "record", "payload": {"token": "too-early"}}),
            ("GET", "/jobs/stats", None),
        ):
            answer = await http.request(method, path, json=body)
            assert answer.status_code == 503, (method, path, answer.text)
            assert answer.json() == {"detail": UNAVAILABLE}
            assert answer.headers["retry-after"] == "1"

        # Down a few seconds (the backoff has grown to 2 s), then the database comes back.
        await logged_try(server, UP_TRY)
        assert server.alive()
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(tcp_proxy.heal)
        up = loop.time()

        submitted: dict[str, httpx.Response] = {}
        rejected = 0

        async def accepted() -> bool:
            nonlocal rejected
            answer = await http.post(
                "/jobs", json={"job_type": "record", "payload": {"token": "after"}}
            )
            if answer.status_code == 503:
                rejected += 1
                return False
            submitted["answer"] = answer
            return True

        await until_alive(server, accepted, what="POST /jobs to be accepted", timeout=REACH_TIMEOUT)
        accepted_after = loop.time() - up
        answer = submitted["answer"]
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]

        async def completed() -> bool:
            job = (await http.get(f"/jobs/{job_id}")).json()
            return bool(job["status"] == JobStatus.COMPLETED)

        await until_alive(server, completed, what="the job to complete", timeout=JOB_TIMEOUT)
        completed_after = loop.time() - up
        job = (await http.get(f"/jobs/{job_id}")).json()

    assert job["result"] == server.process.pid
    assert server.tokens() == ["after"]
    gaps = check_backoff(server)
    assert "INFO fastapi_equeue: applied migrations" in server.text(), server.output()
    reached = reached_after(server)
    assert_no_traceback(server)
    assert '" 500' not in server.text(), server.output()
    report(
        test="uvicorn",
        tries=len(gaps) + 1,
        gaps=[round(g, 2) for g in gaps],
        reached_after=reached,
        up_to_201=f"{accepted_after:.2f}s",
        up_to_completed=f"{completed_after:.2f}s",
        posts_503_after_up=rejected,
    )


# -- standalone worker -----------------------------------------------------------------------


@pytest.mark.process
async def test_worker_started_while_the_cluster_is_stopped_waits_then_works(
    cluster: ThrowawayCluster, cluster_db: str, workers: Workers
) -> None:
    await asyncio.to_thread(cluster.stop, "fast")
    worker = start_worker(workers, cluster_db)

    # It does not exit: it keeps trying, one line per try, and does not claim to be running.
    await logged_try(worker, UP_TRY)
    assert worker.alive()
    assert "worker running" not in worker.text(), worker.output()
    tries_while_down = len(outage_tries(worker.text().splitlines()))

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(cluster.start)
    up = loop.time()
    async with enqueuer(cluster_db) as client:
        job = await client.enqueue("record", {"token": "after"})
        done = await client.wait(job.id, timeout=REACH_TIMEOUT + JOB_TIMEOUT)
    completed_after = loop.time() - up

    assert done.status is JobStatus.COMPLETED
    assert done.result == worker.process.pid
    assert completed_after < REACH_TIMEOUT, completed_after
    assert worker.tokens() == ["after"]
    await until_alive(worker, worker.running, what="worker running", timeout=5)
    lines = worker.text().splitlines()
    reached_at = next(i for i, line in enumerate(lines) if REACHED.search(line))
    running_at = next(i for i, line in enumerate(lines) if "worker running" in line)
    assert reached_at < running_at, worker.output()
    gaps = check_backoff(worker)
    reached = reached_after(worker)

    worker.process.send_signal(signal.SIGTERM)
    assert await worker.exited(STOP_TIMEOUT) == 0, worker.output()
    assert_no_traceback(worker)
    report(
        test="worker/cluster-stop",
        tries=len(gaps) + 1,
        tries_before_up=tries_while_down,
        gaps=[round(g, 2) for g in gaps],
        reached_after=reached,
        up_to_completed=f"{completed_after:.2f}s",
    )


@pytest.mark.process
async def test_worker_stopped_while_the_database_is_down_exits_cleanly(
    refused_url: str, workers: Workers
) -> None:
    worker = start_worker(workers, refused_url)
    # Past the first try: the worker sleeps in its backoff when the signal comes.
    await logged_try(worker, 2)

    loop = asyncio.get_running_loop()
    worker.process.send_signal(signal.SIGTERM)
    signalled = loop.time()
    assert await worker.exited(STOP_TIMEOUT) == 0, worker.output()
    exited_after = loop.time() - signalled

    assert "received SIGTERM" in worker.text(), worker.output()
    assert "worker running" not in worker.text(), worker.output()
    assert "reached the job database" not in worker.text(), worker.output()
    assert_no_traceback(worker)
    report(test="worker/sigterm-while-down", exited_after=f"{exited_after:.2f}s")
