"""The standalone worker, ``python -m fastapi_equeue.worker``, as real processes on PostgreSQL:
beside an enqueue-only app, several at once, killed outright, stopped by a signal, and its command
line. Every wait polls the database against a deadline; no assertion is about time.
"""

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_equeue import Job, JobStatus, QueueClient, get_queue
from tests.process.conftest import APP_DIR, REPO_ROOT, Database, Worker, Workers
from tests.process.worker_app import build_queue

pytestmark = pytest.mark.process

# A deadline for a stopping worker, far above the 2 s shutdown grace it is given: it bounds the
# wait, it does not measure it.
EXIT_DEADLINE = 20.0
WAIT_TIMEOUT = 60.0


def ledger_tokens(*workers: Worker) -> Counter[str]:
    """How many times each token was recorded, across the ledgers of ``workers``."""
    return Counter(token for worker in workers for token in worker.tokens())


async def finished(client: QueueClient, jobs: list[Job]) -> list[Job]:
    return list(await asyncio.gather(*(client.wait(job.id, timeout=WAIT_TIMEOUT) for job in jobs)))


@pytest.mark.postgres_only
async def test_worker_runs_jobs_enqueued_by_an_enqueue_only_app(
    process_url: str, workers: Workers, db: Database
) -> None:
    worker = workers.start("worker")
    await db.ready(worker)

    queue = build_queue(process_url, concurrency=0, poll_interval=0.05)
    app = FastAPI()

    @app.post("/orders/{token}")
    async def place_order(
        token: str, jobs: Annotated[QueueClient, Depends(get_queue)]
    ) -> dict[str, str]:
        job = await jobs.enqueue("noop", {"token": token})
        return {"job_id": job.id}

    async with queue.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            job_ids = []
            for n in range(25):
                response = await http.post(f"/orders/http-{n}")
                assert response.status_code == 200, response.text
                job_ids.append(response.json()["job_id"])
        jobs = [await queue.client.get(job_id) for job_id in job_ids]
        jobs += [await queue.client.enqueue("noop", {"token": f"direct-{n}"}) for n in range(25)]
        done = await finished(queue.client, [job for job in jobs if job is not None])

    assert len(done) == 50
    assert {job.status for job in done} == {JobStatus.COMPLETED}
    assert {job.result for job in done} == {worker.pid}
    assert ledger_tokens(worker) == Counter(
        [f"http-{n}" for n in range(25)] + [f"direct-{n}" for n in range(25)]
    )
    assert worker.alive(), worker.output()


@pytest.mark.postgres_only
async def test_three_workers_run_every_job_exactly_once(
    client: QueueClient, workers: Workers, db: Database
) -> None:
    pool = [workers.start(f"worker-{n}") for n in range(3)]
    await db.ready(*pool)
    # Every third job is a plain `def`, which runs in the worker's threads.
    items = [
        {"job_type": "noop_sync" if n % 3 == 0 else "noop", "payload": {"token": f"t{n}"}}
        for n in range(3000)
    ]
    jobs = await client.enqueue_many(items)
    assert len(jobs) == 3000

    async def all_completed() -> bool:
        return (await db.counts())["completed"] == 3000

    await db.until(all_completed, what="3,000 jobs to complete", timeout=WAIT_TIMEOUT, alive=pool)

    assert await db.counts() == Counter(completed=3000)
    recorded = ledger_tokens(*pool)
    assert [token for token, times in recorded.items() if times > 1] == []
    assert set(recorded) == {f"t{n}" for n in range(3000)}
    assert sum(recorded.values()) == 3000
    pids = {worker.pid for worker in pool}
    for job in [await client.get(job.id) for job in jobs[::97]]:
        assert job is not None
        assert job.attempts == 1
        assert job.result in pids


@pytest.mark.postgres_only
async def test_jobs_of_a_killed_worker_are_rescued_and_rerun(
    client: QueueClient, workers: Workers, db: Database
) -> None:
    intervals = {"EQUEUE_STALLED_AFTER": "2", "EQUEUE_HEARTBEAT_INTERVAL": "0.3"}
    doomed = workers.start("doomed", **intervals)
    await db.ready(doomed)
    jobs = await client.enqueue_many(
        {"job_type": "sleep_then_record", "payload": {"token": f"s{n}", "seconds": 3}}
        for n in range(10)
    )

    async def all_processing_in_doomed() -> bool:
        return await db.processing_by(doomed) == 10

    await db.until(all_processing_in_doomed, what="10 jobs processing", alive=[doomed])
    doomed.send(signal.SIGKILL)
    assert await doomed.exited(EXIT_DEADLINE) == -signal.SIGKILL

    rescuer = workers.start("rescuer", **intervals)
    done = await finished(client, jobs)

    for job in done:
        assert job.status is JobStatus.COMPLETED, job
        assert job.attempts == 2
        assert job.result == rescuer.pid
        assert job.last_error is not None
        assert job.last_error.startswith("WorkerLost")
        assert [error.attempt for error in job.errors] == [1]
        assert job.errors[0].error.startswith("WorkerLost")
    assert (await db.counts())["processing"] == 0
    assert doomed.tokens() == []
    assert ledger_tokens(rescuer) == Counter(f"s{n}" for n in range(10))


@pytest.mark.postgres_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_signal_lets_short_jobs_finish_and_puts_long_ones_back(
    signum: signal.Signals, client: QueueClient, workers: Workers, db: Database
) -> None:
    first = workers.start("first", EQUEUE_SHUTDOWN_GRACE="2")
    await db.ready(first)
    short = await client.enqueue_many(
        {"job_type": "sleep_then_record", "payload": {"token": f"short{n}", "seconds": 1}}
        for n in range(4)
    )
    long = await client.enqueue_many(
        {"job_type": "long_sleep", "payload": {"token": f"long{n}"}} for n in range(3)
    )

    async def all_processing() -> bool:
        return await db.processing_by(first) == 7

    await db.until(all_processing, what="7 jobs processing", alive=[first])
    first.send(signum)
    assert await first.exited(EXIT_DEADLINE) == 0, first.output()

    for job in [await client.get(job.id) for job in short]:
        assert job is not None
        assert job.status is JobStatus.COMPLETED, job
        assert job.result == first.pid
    for job in [await client.get(job.id) for job in long]:
        assert job is not None
        assert job.status is JobStatus.QUEUED, job
        assert job.attempts == 0
        assert job.last_error is None
        assert job.errors == []
    assert (await db.counts())["processing"] == 0
    assert ledger_tokens(first) == Counter(f"short{n}" for n in range(4))

    # Put back, the long jobs are claimable: a second worker (whose long jobs are quick) runs them.
    second = workers.start("second", LONG_SECONDS="0")
    for job in await finished(client, long):
        assert job.status is JobStatus.COMPLETED, job
        assert job.attempts == 1
        assert job.result == second.pid
    assert ledger_tokens(second) == Counter(f"long{n}" for n in range(3))


@pytest.mark.postgres_only
async def test_second_signal_stops_without_waiting_for_the_grace(
    client: QueueClient, workers: Workers, db: Database
) -> None:
    # A grace far beyond the exit deadline: only the second signal can make the worker exit in time.
    worker = workers.start("worker", EQUEUE_SHUTDOWN_GRACE="300")
    await db.ready(worker)
    jobs = await client.enqueue_many(
        {"job_type": "long_sleep", "payload": {"token": f"long{n}"}} for n in range(3)
    )

    async def all_processing() -> bool:
        return await db.processing_by(worker) == 3

    await db.until(all_processing, what="3 jobs processing", alive=[worker])
    worker.send(signal.SIGTERM)

    async def first_signal_seen() -> bool:
        return "shutting down gracefully" in worker.text()

    # Two signals sent back to back may reach the process as one: send the second once the first
    # is handled.
    await db.until(first_signal_seen, what="the first SIGTERM to be handled", alive=[worker])
    worker.send(signal.SIGTERM)
    assert await worker.exited(EXIT_DEADLINE) == 0, worker.output()

    for job in [await client.get(job.id) for job in jobs]:
        assert job is not None
        assert job.status is JobStatus.QUEUED, job
        assert job.attempts == 0
        assert job.errors == []


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastapi_equeue.worker", *args],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.pathsep.join([str(APP_DIR), str(REPO_ROOT)]),
            # Never connected to: every case here stops before the worker starts.
            "EQUEUE_URL": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_describes_the_command_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for text in ("MODULE:ATTRIBUTE", "--concurrency", "--queues"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker_app"], "expected MODULE:ATTRIBUTE, got 'worker_app'"),
        (["no_such_module:queue"], "cannot import 'no_such_module'"),
        (["worker_app:missing"], "'worker_app' has no attribute 'missing'"),
        (["worker_app:build_queue"], "worker_app:build_queue is a function, not an EQueue"),
        (["worker_app:queue", "--concurrency", "0"], "--concurrency must be at least 1"),
        ([], "the following arguments are required: MODULE:ATTRIBUTE"),
    ],
    ids=["no-colon", "no-module", "no-attribute", "not-a-queue", "zero-concurrency", "no-target"],
)
def test_bad_target_exits_nonzero_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli(tmp_path, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
