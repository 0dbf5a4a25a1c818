"""chancy's adapter (see kit.py for the commands), through its public API.

- pool: chancy's own (psycopg 3, 1..10 connections); its logger is set to WARNING (it logs every
  job at INFO);
- install: ``Chancy.migrate()`` and ``declare(Queue("default", AsyncExecutor,
  eager_polling=True))``. Without eager polling a worker on a backlog takes only ``concurrency``
  jobs per 5 s poll (perf.md measured 22 jobs/s); eager polling is the knob its docs give;
- enqueue: ``Chancy.push``; bulk: ``Chancy.push_many`` (1,000 per transaction);
- worker: ``Worker(chancy)`` (its own SIGTERM handling); the queue's concurrency lives in the
  database, so the worker re-declares the queue for its config before t0: default (the
  AsyncExecutor's default, 100), c10, c50; t0 is taken before the pool is opened;
- claim: ``Worker.fetch_jobs(queue, conn, up_to=1)``, the worker's own fetch.
"""

import logging
import sys
from typing import Any

import kit
from chancy import Chancy, Job, Queue, Worker, job

CONFIGS = {"default": None, "c10": 10, "c50": 50}


@job(queue="default")
async def noop(i: int, t: float) -> None:
    kit.TALLY.record(i, t)


def new_job(p: dict[str, Any]) -> Job:
    return noop.job.with_kwargs(**p)  # type: ignore[attr-defined]


def default_queue(concurrency: int | None) -> Queue:
    return Queue(
        "default",
        executor=Chancy.Executor.Async,
        concurrency=concurrency,
        eager_polling=True,
    )


def build(dsn: str) -> Chancy:
    log = logging.getLogger("chancy")
    log.setLevel(logging.WARNING)
    return Chancy(dsn, log=log)


async def worker(args: Any) -> None:
    setup = build(args.dsn)
    async with setup:
        await setup.declare(default_queue(CONFIGS[args.config]), upsert=True)
    kit.start_watchdog(args.max_seconds)
    kit.stamp_t0(args.run_dir)
    chancy = build(args.dsn)
    async with chancy, Worker(chancy) as running:
        await running.wait_for_shutdown()


async def run(args: Any) -> dict[str, Any]:
    if args.command == "worker":
        await worker(args)
        return {}
    chancy = build(args.dsn)
    async with chancy:
        if args.command == "install":
            await chancy.migrate()
            await chancy.declare(default_queue(None), upsert=True)
            return {}

        async def enqueue_one(i: int) -> None:
            await chancy.push(new_job(kit.payload(i)))

        async def enqueue_many(batch: list[dict[str, Any]]) -> None:
            async for _ in chancy.push_many([new_job(p) for p in batch]):
                pass

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
            fetcher = Worker(chancy, register_signal_handlers=False)
            queue = await chancy.get_queue("default")

            async def claim_one() -> int:
                async with chancy.pool.connection() as conn:
                    return len(await fetcher.fetch_jobs(queue, conn, up_to=1))

            return {"claims": await kit.timed_claims(args.n, args.warmup, claim_one)}
    raise SystemExit(f"unknown command {args.command}")


def main() -> int:
    return kit.run_main(tuple(CONFIGS), run)


if __name__ == "__main__":
    sys.exit(main())
