"""oban's (the Python port's) adapter (see kit.py for the commands). Needs Python >= 3.12.

- pool: ``Oban.create_pool`` (psycopg 3, 1..10 connections);
- install: ``oban.schema.install``;
- the task is a ``@worker`` class (``@job`` functions' ``enqueue`` fails in 0.7.0: it binds the
  arguments twice); enqueue: ``Oban.enqueue(Noop.new(args))``; bulk: ``Oban.enqueue_many``;
- worker: ``Oban(queues={"default": limit}).start()``; configs: default (limit 10, the value its
  docs use), c50; it installs no signal handler, so SIGTERM calls ``stop()``; t0 is taken before
  the pool is created;
- claim: the ``fetch_jobs`` query of the worker's producer with a demand of one. oban exposes no
  public claim call, so this goes through its internal ``Query`` object (``oban._query``).
"""

import sys
import uuid
from typing import Any

import kit
from oban import Job, Oban, worker
from oban.schema import install

CONFIGS = {"default": 10, "c50": 50}


@worker(queue="default")
class Noop:
    async def process(self, job: Job) -> None:
        kit.TALLY.record(job.args["i"], job.args["t"])


async def worker(args: Any) -> None:
    kit.start_watchdog(args.max_seconds)
    kit.stamp_t0(args.run_dir)
    pool = await Oban.create_pool(args.dsn)
    try:
        oban = Oban(pool=pool, queues={"default": CONFIGS[args.config]})
        await oban.start()
        try:
            await kit.wait_for_signal()
        finally:
            await oban.stop()
    finally:
        await pool.close()


async def run(args: Any) -> dict[str, Any]:
    if args.command == "worker":
        await worker(args)
        return {}
    pool = await Oban.create_pool(args.dsn)
    try:
        if args.command == "install":
            await install(pool)
            return {}
        async with Oban(pool=pool) as oban:

            async def enqueue_one(i: int) -> None:
                await oban.enqueue(Noop.new(kit.payload(i)))  # type: ignore[attr-defined]

            async def enqueue_many(batch: list[dict[str, Any]]) -> None:
                await oban.enqueue_many([Noop.new(p) for p in batch])  # type: ignore[attr-defined]

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
                query = oban._query
                producer_uuid = str(uuid.uuid4())

                async def claim_one() -> int:
                    jobs = await query.fetch_jobs(
                        demand=1, queue="default", node="bench", uuid=producer_uuid
                    )
                    return len(jobs)

                return {"claims": await kit.timed_claims(args.n, args.warmup, claim_one)}
    finally:
        await pool.close()
    raise SystemExit(f"unknown command {args.command}")


def main() -> int:
    return kit.run_main(tuple(CONFIGS), run)


if __name__ == "__main__":
    sys.exit(main())
