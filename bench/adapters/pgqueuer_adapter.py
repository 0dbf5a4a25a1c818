"""PgQueuer's adapter (see kit.py for the commands), through its public API.

- driver: one asyncpg connection, ``AsyncpgDriver`` (as its CLI does);
- install: ``Queries.install()``;
- enqueue: ``Queries.enqueue(name, payload)``; bulk: ``Queries.enqueue`` with lists;
- worker: ``QueueManager.run``; configs: default (the CLI's defaults: batch 10, no cap on
  concurrent tasks), c10 (cap 10, batch 5: the library requires cap >= 2 x batch), c50 (cap 50,
  batch 10); it installs no signal handler, so SIGTERM sets ``qm.shutdown``; t0 is taken before
  the connection is opened;
- claim: ``Queries.dequeue`` with a batch of one, the query the worker's fetch loop runs.

Completed jobs leave the ``pgqueuer`` table for ``pgqueuer_log``.
"""

import asyncio
import json
import sys
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import kit
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.ports.repository import EntrypointExecutionParameter
from pgqueuer.types import QueueEntrypoint, QueueManagerId

# name: (batch_size, max_concurrent_tasks)
CONFIGS: dict[str, tuple[int, int | None]] = {
    "default": (10, None),
    "c10": (5, 10),
    "c50": (10, 50),
}


def encode(p: dict[str, Any]) -> bytes:
    return json.dumps(p).encode()


async def worker(args: Any) -> None:
    batch_size, cap = CONFIGS[args.config]
    kit.start_watchdog(args.max_seconds)
    kit.stamp_t0(args.run_dir)
    conn = await asyncpg.connect(args.dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        p = json.loads(job.payload or b"{}")
        kit.TALLY.record(p["i"], p["t"])

    async def stop_on_signal() -> None:
        await kit.wait_for_signal()
        qm.shutdown.set()

    stopper = asyncio.create_task(stop_on_signal())
    try:
        await qm.run(batch_size=batch_size, max_concurrent_tasks=cap)
    finally:
        stopper.cancel()
        await conn.close()


async def run(args: Any) -> dict[str, Any]:
    if args.command == "worker":
        await worker(args)
        return {}
    conn = await asyncpg.connect(args.dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))

        async def enqueue_one(i: int) -> None:
            await queries.enqueue("noop", encode(kit.payload(i)))

        async def enqueue_many(batch: list[dict[str, Any]]) -> None:
            n = len(batch)
            await queries.enqueue(["noop"] * n, [encode(p) for p in batch], [0] * n)

        if args.command == "install":
            await queries.install()
            return {}
        if args.command == "enqueue":
            return await kit.timed_enqueue(args.n, enqueue_one)
        if args.command == "bulk":
            return await kit.timed_bulk(args.calls, args.size, enqueue_many)
        if args.command == "prequeue":
            await kit.prequeue(args.n, enqueue_many)
            return {}
        if args.command == "paced":
            await kit.paced(args.n, args.gap, enqueue_one)
            return {}
        if args.command == "claim":
            entrypoints = {
                QueueEntrypoint("noop"): EntrypointExecutionParameter(concurrency_limit=0)
            }
            manager_id = QueueManagerId(uuid.uuid4())

            async def claim_one() -> int:
                jobs = await queries.dequeue(
                    batch_size=1,
                    entrypoints=entrypoints,
                    queue_manager_id=manager_id,
                    global_concurrency_limit=None,
                    heartbeat_timeout=timedelta(seconds=30),
                )
                return len(jobs)

            return {"claims": await kit.timed_claims(args.n, args.warmup, claim_one)}
    finally:
        await conn.close()
    raise SystemExit(f"unknown command {args.command}")


def main() -> int:
    return kit.run_main(tuple(CONFIGS), run)


if __name__ == "__main__":
    sys.exit(main())
