"""Through PgBouncer in transaction mode, with the contract's "Connection poolers" settings, every
job runs exactly once, no statement is prepared by name, and a LISTEN that stops delivering is
detected, not trusted.

The URL parameter ``prepared_statement_cache_size=0`` makes every statement unnamed; a named one
would fail with "prepared statement ... does not exist" as soon as the pooler hands the client
another server connection (``test_harness.py`` shows it does). So an error-free run of two
workers and an enqueuing app, all through the pooler, is the proof that nothing was prepared by
name. The three settings: LISTEN on the direct server (``listen_url``), no LISTEN at all
(``poll_only``), and LISTEN through the pooler, which hears nothing, is found deaf, and leaves
the workers polling.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from fastapi_equeue import EQueue
from fastapi_equeue.testing import eventually
from tests.faults.harness import database_of
from tests.faults.pgbouncer import PgBouncer
from tests.process.conftest import Workers
from tests.process.worker_app import build_queue

pytestmark = [pytest.mark.process, pytest.mark.slow]

Connect = Callable[..., Awaitable[asyncpg.Connection]]

NO_NAMED_STATEMENTS = "?prepared_statement_cache_size=0"
DEAF = "did not reach the listen connection"
NOTIFIER_LOGGER = "fastapi_equeue.backends.postgres.notifier"
# Errors a statement prepared by name would cause once the pooler switches server connections.
PREPARED_ERRORS = ("prepared statement", "does not exist")

JOBS = 3000
ROUNDS = 10
SINGLES_PER_ROUND = 60  # enqueue() calls, 20 in flight at a time
BATCH = 120  # enqueue_many() items; two batches per round
IN_FLIGHT = 20
# The notifier gives a probe 5 s to come back; the warning must be logged within this.
DETECT_WITHIN = 10.0
# Deadlines that bound a wait, far above what it normally takes: they do not measure it. A
# worker whose LISTEN goes through the pooler waits for its first probe to fail, and then for
# its notifier's start to give up (15 s), before it serves.
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 180.0

# The contract's two settings for a pooler, and the URL parameter alone (LISTEN through the
# pooler: found deaf, the workers poll).
SETTINGS = ("listen_url", "poll_only", "url_only")


def pooled_url(pgbouncer: PgBouncer, direct_url: str) -> str:
    """``direct_url``'s database through the pooler, with no statement prepared by name."""
    return pgbouncer.url_for(database_of(direct_url)) + NO_NAMED_STATEMENTS


def options_for(setting: str, direct_url: str) -> dict[str, Any]:
    """The ``EQueue`` keywords of ``setting``; ``listen_url`` LISTENs on ``direct_url``."""
    if setting == "listen_url":
        return {"listen_url": direct_url}
    if setting == "poll_only":
        return {"poll_only": True}
    return {}


def environment_for(options: dict[str, Any]) -> dict[str, str]:
    """The same keywords as ``worker_app`` reads them from the environment."""
    environment = {}
    if "listen_url" in options:
        environment["EQUEUE_LISTEN_URL"] = options["listen_url"]
    if options.get("poll_only"):
        environment["EQUEUE_POLL_ONLY"] = "1"
    return environment


def job_specs(round_number: int) -> tuple[list[str], list[dict[str, Any]]]:
    """One round's tokens for single ``enqueue`` calls, and its ``enqueue_many`` items."""
    per_round = JOBS // ROUNDS
    tokens = [f"r{round_number}-{n}" for n in range(per_round)]
    items = [
        {"job_type": "noop" if n % 2 else "noop_sync", "payload": {"token": token}}
        for n, token in enumerate(tokens[SINGLES_PER_ROUND:])
    ]
    return tokens[:SINGLES_PER_ROUND], items


async def enqueue_all(queue: EQueue) -> list[str]:
    """Enqueue ``JOBS`` jobs, mixing single calls (several in flight) and batches; the tokens."""
    client = queue.client
    enqueued: list[str] = []
    for round_number in range(ROUNDS):
        singles, items = job_specs(round_number)
        for start in range(0, len(singles), IN_FLIGHT):
            chunk = singles[start : start + IN_FLIGHT]
            await asyncio.gather(*(client.enqueue("noop", {"token": token}) for token in chunk))
        for start in range(0, len(items), BATCH):
            await client.enqueue_many(items[start : start + BATCH])
        enqueued += singles + [item["payload"]["token"] for item in items]
    assert len(enqueued) == JOBS
    return enqueued


async def status_counts(conn: asyncpg.Connection) -> Counter[str]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM equeue_jobs GROUP BY status")
    return Counter({row["status"]: row["n"] for row in rows})


def deaf_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The notifier's warnings that a NOTIFY did not come back on its listen connection."""
    return [
        record
        for record in caplog.records
        if record.name == NOTIFIER_LOGGER
        and record.levelno == logging.WARNING
        and DEAF in record.getMessage()
    ]


@pytest.mark.parametrize("setting", SETTINGS)
async def test_two_workers_run_every_job_exactly_once_through_the_pooler(
    setting: str,
    pgbouncer: PgBouncer,
    cluster_db: str,
    connect: Connect,
    workers: Workers,
) -> None:
    url = pooled_url(pgbouncer, cluster_db)
    options = options_for(setting, cluster_db)
    env = environment_for(options)
    observer = await connect(cluster_db)

    # The enqueuing app goes through the pooler too; starting it applies the schema.
    async with build_queue(url, concurrency=0, **options) as queue:
        pair = [workers.start(name, database_url=url, **env) for name in ("w1", "w2")]
        await workers.serving(*pair)

        started = time.monotonic()
        tokens = await enqueue_all(queue)
        enqueued_in = time.monotonic() - started

        async def drained() -> bool:
            return (await status_counts(observer))["completed"] == JOBS

        await workers.until(drained, what=f"{JOBS} jobs to complete", timeout=DRAIN_TIMEOUT)
        drained_in = time.monotonic() - started

    counts = await status_counts(observer)
    attempts = await observer.fetchval("SELECT count(*) FROM equeue_jobs WHERE attempts <> 1")
    ledger = Counter(token for worker in pair for token in worker.tokens())
    duplicates = sum(n - 1 for n in ledger.values() if n > 1)
    shares = {worker.name: len(worker.tokens()) for worker in pair}
    print(
        f"\n[{setting}] jobs={len(tokens)} completed={counts['completed']} ran={ledger.total()} "
        f"duplicates={duplicates} shares={shares} enqueue={enqueued_in:.2f}s "
        f"drain={drained_in:.2f}s"
    )

    assert counts == Counter({"completed": JOBS}), dict(counts)
    assert attempts == 0
    assert ledger == Counter(tokens), (
        f"duplicates={duplicates}, missing={len(set(tokens) - set(ledger))}"
    )
    assert all(shares.values()), shares
    for worker in pair:
        output = worker.output(limit=1_000_000)
        assert worker.alive(), output
        for error in PREPARED_ERRORS:
            assert error not in output, output
        assert "Traceback" not in output, output
        # Listening through the pooler is found deaf; either setting of the contract avoids it.
        assert (DEAF in output) == (setting == "url_only"), output


@pytest.fixture
def single_server_bouncer(pgbouncer: PgBouncer) -> Iterator[PgBouncer]:
    """A second PgBouncer in transaction mode with one server connection: every client's
    statement runs on it, so its ``pg_prepared_statements`` shows any name anyone prepared."""
    with PgBouncer(pgbouncer.server_port, settings={"default_pool_size": "1"}) as bouncer:
        yield bouncer


@pytest.mark.parametrize("setting", SETTINGS)
async def test_no_statement_is_prepared_by_name_through_the_pooler(
    setting: str,
    single_server_bouncer: PgBouncer,
    cluster_db: str,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=NOTIFIER_LOGGER)
    url = pooled_url(single_server_bouncer, cluster_db)
    observer = await connect(cluster_db)
    pooled = await connect(
        single_server_bouncer.url_for(database_of(cluster_db)), statement_cache_size=0
    )

    async with build_queue(url, concurrency=2, **options_for(setting, cluster_db)) as queue:
        await queue.client.enqueue_many(
            [{"job_type": "noop", "payload": {"token": f"many-{n}"}} for n in range(20)]
        )
        for n in range(20):
            await queue.client.enqueue("noop_sync", {"token": f"single-{n}"})

        async def drained() -> bool:
            return (await status_counts(observer))["completed"] == 40

        await eventually(drained, timeout=DRAIN_TIMEOUT)
        if setting == "url_only":
            # The notifier has listened through the pooler at least once.
            async def warned() -> list[logging.LogRecord]:
                return deaf_warnings(caplog)

            await eventually(warned, timeout=DETECT_WITHIN)

        named = await pooled.fetch("SELECT name, statement FROM pg_prepared_statements")

    assert [dict(row) for row in named] == []
    assert not [r.getMessage() for r in caplog.records if "prepared statement" in r.getMessage()]


async def test_listen_through_the_pooler_is_found_deaf(
    pgbouncer: PgBouncer, cluster_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=NOTIFIER_LOGGER)
    queue = build_queue(pooled_url(pgbouncer, cluster_db), concurrency=1)
    started = time.time()

    async with queue:

        async def warned() -> list[logging.LogRecord]:
            return deaf_warnings(caplog)

        records = await eventually(warned, timeout=DETECT_WITHIN)
        assert queue._store is not None
        assert not queue._store.notifier.connected  # type: ignore[attr-defined]

    assert records[0].created - started < DETECT_WITHIN


async def test_listen_url_listens_on_the_server_and_is_trusted(
    pgbouncer: PgBouncer, cluster_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=NOTIFIER_LOGGER)
    queue = build_queue(pooled_url(pgbouncer, cluster_db), concurrency=1, listen_url=cluster_db)

    async with queue:
        assert queue._store is not None
        notifier = queue._store.notifier

        async def connected() -> bool:
            return bool(notifier.connected)  # type: ignore[attr-defined]

        await eventually(connected, timeout=DETECT_WITHIN)
        assert not deaf_warnings(caplog)
