"""procrastinate's adapter (see kit.py for the commands), through its public API.

- connector: ``PsycopgConnector`` (psycopg 3; procrastinate 3.x has no asyncpg connector);
- install: ``app.schema_manager.apply_schema_async()``;
- enqueue: ``Task.defer_async``; bulk: ``Task.batch_defer_async``;
- worker: ``app.run_worker_async`` (its own SIGTERM handling); configs: default (concurrency 1,
  the library's default), c10, c50; t0 is taken before ``app.open_async()``;
- claim: ``app.job_manager.fetch_job`` for a registered worker, the worker's own fetch.
"""

import logging
import sys
from typing import Any

import kit
import procrastinate

CONFIGS = {"default": None, "c10": 10, "c50": 50}


def build_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop(i: int, t: float) -> None:
        kit.TALLY.record(i, t)

    return app


async def run(args: Any) -> dict[str, Any]:
    app = build_app(args.dsn)
    noop = app.tasks["noop"]
    if args.command == "worker":
        kit.start_watchdog(args.max_seconds)
        kit.stamp_t0(args.run_dir)
        async with app.open_async():
            options: dict[str, Any] = {}
            if CONFIGS[args.config] is not None:
                options["concurrency"] = CONFIGS[args.config]
            await app.run_worker_async(**options)
        return {}
    async with app.open_async():
        if args.command == "install":
            await app.schema_manager.apply_schema_async()
            return {}
        if args.command == "enqueue":
            return await kit.timed_enqueue(args.n, lambda i: noop.defer_async(**kit.payload(i)))
        if args.command == "bulk":
            return await kit.timed_bulk(args.calls, args.size, lambda b: noop.batch_defer_async(*b))
        if args.command == "prequeue":
            await kit.prequeue(args.n, lambda b: noop.batch_defer_async(*b))
            return {}
        if args.command == "paced":
            await kit.paced(args.n, args.gap, lambda i: noop.defer_async(**kit.payload(i)))
            return {}
        if args.command == "claim":
            manager = app.job_manager
            worker_id = await manager.register_worker()

            async def claim_one() -> int:
                job = await manager.fetch_job(queues=None, worker_id=worker_id)
                return 0 if job is None else 1

            return {"claims": await kit.timed_claims(args.n, args.warmup, claim_one)}
    raise SystemExit(f"unknown command {args.command}")


def main() -> int:
    # "App is instantiated in the main Python module": true of every adapter, and harmless.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    return kit.run_main(tuple(CONFIGS), run)


if __name__ == "__main__":
    sys.exit(main())
