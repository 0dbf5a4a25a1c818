"""PostgreSQL restarted, or lost without a word, under a working queue: nothing is lost, only a
job running at the fault may run twice, requests after recovery do not fail on stale pooled
connections, and LISTEN is back.

Each test runs on the session's own throwaway cluster (``cluster_db``), never the shared server.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

import pytest

from fastapi_equeue import EQueue, JobStatus
from tests.faults.cluster import ThrowawayCluster
from tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.slow

DEADLINE = 60.0
BATCH = 10
BATCHES = 60
OUTAGE = 3.0


class Ledger:
    """What the task bodies did: runs per token, which ran when, and when each began."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.running: set[str] = set()
        self.began: dict[str, float] = {}
        self.running_at_fault: set[str] = set()


def build(url: str, ledger: Ledger, **options: object) -> EQueue:
    settings: dict[str, object] = {
        "concurrency": 8,
        "heartbeat_interval": 0.3,
        "stalled_after": 3.0,
        "shutdown_grace": 2.0,
    }
    queue = EQueue(url, **{**settings, **options})  # type: ignore[arg-type]

    @queue.task(retry_delay=0, max_attempts=10)
    async def work(token: str) -> str:
        ledger.runs[token] += 1
        ledger.running.add(token)
        ledger.began.setdefault(token, time.monotonic())
        try:
            await asyncio.sleep(0.05)
        finally:
            ledger.running.discard(token)
        return token

    return queue


class Producer:
    """Enqueues batches at a steady pace; a failed batch is sent again with the same keys, so
    each token is one job whatever the failures, which are recorded with their time."""

    def __init__(self, queue: EQueue) -> None:
        self.queue = queue
        self.failures: list[tuple[float, str]] = []
        self.tokens: list[str] = []
        self.ids: list[str] = []
        self.batches_done = asyncio.Event()
        self.halfway = asyncio.Event()

    async def run(self) -> None:
        for b in range(BATCHES):
            tokens = [f"t{b}-{i}" for i in range(BATCH)]
            jobs = [
                {"job_type": "work", "payload": {"token": t}, "idempotency_key": t} for t in tokens
            ]
            while True:
                try:
                    self.ids += [job.id for job in await self.queue.client.enqueue_many(jobs)]
                    break
                except Exception as exc:
                    self.failures.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                    await asyncio.sleep(0.1)  # pacing the retries of a load generator
            self.tokens += tokens
            if b == BATCHES // 3:
                self.halfway.set()
            await asyncio.sleep(0.05)  # pacing: a steady load, not a condition
        self.batches_done.set()


async def _pickup_latency(queue: EQueue, ledger: Ledger, token: str) -> float:
    enqueued = time.monotonic()
    job = await queue.client.enqueue("work", {"token": token})
    done = await queue.client.wait(job.id, timeout=DEADLINE)
    assert done.status is JobStatus.COMPLETED
    return ledger.began[token] - enqueued


async def _run_fault(
    queue: EQueue, ledger: Ledger, producer: Producer, fault: Callable[[], None]
) -> tuple[float, float]:
    """Start the load, apply ``fault`` (blocking, in a thread) once a third of it is in; the
    time the fault began and ended."""
    feeding = asyncio.create_task(producer.run())
    await asyncio.wait_for(producer.halfway.wait(), DEADLINE)
    ledger.running_at_fault = set(ledger.running)
    down_at = time.monotonic()
    await asyncio.to_thread(fault)
    up_at = time.monotonic()
    ledger.running_at_fault |= set(ledger.running)
    await asyncio.wait_for(feeding, DEADLINE)
    return down_at, up_at


def _outage_log_lines(records: list[logging.LogRecord]) -> Counter[tuple[str, str]]:
    return Counter(
        (r.name, str(r.msg))
        for r in records
        if r.name.startswith("fastapi_equeue") and r.levelno >= logging.WARNING
    )


def _down_for_a_while(cluster: ThrowawayCluster) -> None:
    cluster.stop("immediate")
    time.sleep(OUTAGE)  # the outage itself: the fault being injected
    cluster.start()


FAULTS: dict[str, Callable[[ThrowawayCluster], None]] = {
    "restart-fast": lambda cluster: cluster.restart("fast"),
    "restart-immediate": lambda cluster: cluster.restart("immediate"),
    "crash-and-3s-down": _down_for_a_while,
}


@pytest.mark.parametrize("mode", list(FAULTS))
async def test_a_restart_under_load_loses_nothing(
    cluster: ThrowawayCluster,
    cluster_db: str,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = Ledger()
    # Only LISTEN can bring a job in under a second: polling is every 30 s.
    queue = build(cluster_db, ledger, poll_interval=30.0)
    caplog.set_level(logging.WARNING, logger="fastapi_equeue")
    async with queue:
        producer = Producer(queue)
        down_at, up_at = await _run_fault(
            queue,
            ledger,
            producer,
            lambda: FAULTS[mode](cluster),
        )
        # LISTEN is back: a job enqueued now starts in under a second.
        await _pickup_latency(queue, ledger, "after-1")
        latency = await _pickup_latency(queue, ledger, "after-2")
        finished = [await queue.client.wait(job_id, timeout=DEADLINE) for job_id in producer.ids]

    late_failures = [f for f in producer.failures if f[0] > up_at]
    twice = {t for t, n in ledger.runs.items() if n > 1}
    lines = _outage_log_lines(caplog.records)
    print(
        f"\nrestart ({mode}): down {up_at - down_at:.2f} s, enqueue failures "
        f"{len(producer.failures)} (after recovery {len(late_failures)}), jobs {len(finished)}, "
        f"ran twice {len(twice)} of {len(ledger.running_at_fault)} running at the fault, "
        f"pickup after recovery {latency * 1000:.0f} ms, warning lines {sum(lines.values())}"
    )
    assert late_failures == []
    assert {job.status for job in finished} == {JobStatus.COMPLETED}
    assert len(finished) == len(producer.tokens) == BATCH * BATCHES
    assert sorted(ledger.runs) == sorted([*producer.tokens, "after-1", "after-2"])
    assert twice <= ledger.running_at_fault
    assert latency < 1.0
    # One line per backoff step at most: no component repeats a warning more than a handful
    # of times over an outage of a few seconds.
    assert max(lines.values(), default=0) <= 8, lines


async def test_connections_lost_without_a_word_fail_no_request_after_recovery(
    cluster: ThrowawayCluster, cluster_db: str, tcp_proxy: TcpProxy
) -> None:
    # As in a failover: the server and the path to it vanish, the pooled connections hear
    # nothing, and the new server does not know them (it resets them when they speak).
    ledger = Ledger()
    database = cluster_db.rsplit("/", 1)[1]
    queue = build(tcp_proxy.url_for(database), ledger, concurrency=0)
    async with queue:
        # Warm the pool: many connections, all idle afterwards.
        warm = await asyncio.gather(
            *(queue.client.enqueue("work", {"token": f"warm-{n}"}) for n in range(12))
        )
        tcp_proxy.blackhole()
        await asyncio.to_thread(cluster.restart, "immediate")
        tcp_proxy.heal(reset_existing="on_use")
        # Every pooled connection is dead; none of these may fail.
        results = await asyncio.gather(
            *(queue.client.get(job.id) for job in warm[:6]),
            *(queue.client.enqueue("work", {"token": f"after-{n}"}) for n in range(30)),
            *(queue.client.get(job.id) for job in warm[6:]),
            return_exceptions=True,
        )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert len(results) == 42
