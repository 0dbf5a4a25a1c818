"""fastapi_equeue's adapter (see kit.py for the commands), through its public API.

- enqueue: ``queue.client.enqueue``; bulk: ``queue.client.enqueue_many``;
- worker: the standalone worker command itself, ``fastapi_equeue.worker.cli.main`` (what
  ``python -m fastapi_equeue.worker`` runs), on this module's ``queue``; configs: default (the
  queue's default concurrency, 10), c10, c50;
- claim: the ``Backend.job_claim`` the worker's producer calls, one job per call;
- ours only: ``serve`` (uvicorn on 127.0.0.1 serving the jobs router, ``concurrency=0``),
  ``load`` (``--n`` ``POST /jobs`` from ``--concurrency`` httpx connections, bounded in time) and
  ``configure`` (``queue.client.configure_queue("default", concurrency=--concurrency)``, the
  global limit over every worker; ``{"skipped": why}`` when the installed package has no such
  call, as before queue settings existed).

``--dsn`` is a libpq URL (run with asyncpg) or ``sqlite+aiosqlite:///file``.
"""

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import kit

import fastapi_equeue as equeue

CONFIGS = {"default": None, "c10": 10, "c50": 50}
QUEUE = "default"
"""The queue every benchmark job goes to (the package's default queue)."""


def database_url(dsn: str) -> str:
    """The SQLAlchemy URL for ``dsn``."""
    if dsn.startswith("postgresql://"):
        return "postgresql+asyncpg://" + dsn.removeprefix("postgresql://")
    return dsn


def build_queue(dsn: str, **options: Any) -> equeue.EQueue:
    """The benchmark's queue: one no-op async task, ``noop(i, t)``."""
    queue = equeue.EQueue(database_url(dsn), **options)

    @queue.task
    async def noop(i: int, t: float) -> None:
        kit.TALLY.record(i, t)

    return queue


async def enqueue_one(queue: equeue.EQueue, i: int) -> None:
    await queue.client.enqueue("noop", kit.payload(i))


async def enqueue_many(queue: equeue.EQueue, payloads: list[dict[str, Any]]) -> None:
    await queue.client.enqueue_many([{"job_type": "noop", "payload": p} for p in payloads])


async def client_command(args: Any) -> dict[str, Any]:
    if args.command == "install":
        await build_queue(args.dsn, concurrency=0).migrate()
        return {}
    if args.command == "claim":
        return {"claims": await claims(args)}
    async with build_queue(args.dsn, concurrency=0, auto_migrate=False) as queue:
        if args.command == "enqueue":
            return await kit.timed_enqueue(args.n, lambda i: enqueue_one(queue, i))
        if args.command == "bulk":
            return await kit.timed_bulk(args.calls, args.size, lambda b: enqueue_many(queue, b))
        if args.command == "prequeue":
            await kit.prequeue(args.n, lambda b: enqueue_many(queue, b))
            return {}
        if args.command == "paced":
            await kit.paced(args.n, args.gap, lambda i: enqueue_one(queue, i))
            return {}
        if args.command == "configure":
            return await configure(queue, args.concurrency)
    raise SystemExit(f"unknown command {args.command}")


async def configure(queue: equeue.EQueue, concurrency: int) -> dict[str, Any]:
    """Set the benchmark queue's global concurrency limit through the public API."""
    call = getattr(queue.client, "configure_queue", None)
    if call is None:
        from importlib.metadata import version

        return {
            "skipped": f"fastapi-equeue {version('fastapi-equeue')} (installed in the venv) has "
            "no client.configure_queue: it predates queue settings"
        }
    await call(QUEUE, concurrency=concurrency)
    return {"queue": QUEUE, "concurrency": concurrency}


async def claims(args: Any) -> list[float]:
    """Time the worker's own claim path: ``Backend.job_claim`` for one job per call."""
    from fastapi_equeue.backend import JobClaimParams, WorkerParams
    from fastapi_equeue.backends import open_backend

    backend = open_backend(database_url(args.dsn))
    await backend.open()
    try:
        worker = WorkerParams(
            id=str(uuid.uuid4()), hostname="bench", pid=os.getpid(), concurrency=1, queues=None
        )
        await backend.worker_register(worker)  # only a registered worker claims
        params = JobClaimParams(worker_id=worker.id, queue=QUEUE, limit=1)

        async def claim_one() -> int:
            return len((await backend.job_claim(params)).jobs)

        return await kit.timed_claims(args.n, args.warmup, claim_one)
    finally:
        await backend.close()


def run_worker(args: Any) -> int:
    """The standalone worker command on this module's ``queue``, stopped by SIGTERM."""
    from fastapi_equeue.worker import cli

    globals()["queue"] = build_queue(args.dsn, auto_migrate=False)
    argv = ["__main__:queue", "--log-level", "WARNING"]
    if CONFIGS[args.config] is not None:
        argv += ["--concurrency", str(CONFIGS[args.config])]
    kit.start_watchdog(args.max_seconds)  # bounded, if nobody stops it
    kit.stamp_t0(args.run_dir)
    return cli.main(argv)


def serve(args: Any) -> None:
    """The web process of the mixed run: the jobs router, no workers (``concurrency=0``)."""
    import uvicorn
    from fastapi import FastAPI

    queue = build_queue(args.dsn, concurrency=0, auto_migrate=False)
    app = FastAPI(lifespan=queue.lifespan)
    app.include_router(equeue.router)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )
    kit.start_watchdog(args.max_seconds)
    uvicorn.Server(config).run()


async def load(args: Any) -> dict[str, Any]:
    """``--n`` submissions through ``POST /jobs`` from ``--concurrency`` connections."""
    import httpx

    base = f"http://127.0.0.1:{args.port}"
    deadline = time.monotonic() + args.max_seconds
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as http:
        while True:  # the server is starting: wait for it, bounded
            try:
                if (await http.get("/jobs/stats")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server never answered")
            await asyncio.sleep(0.1)
        next_i = 0
        errors = 0

        async def submitter() -> None:
            nonlocal next_i, errors
            while next_i < args.n and time.monotonic() < deadline:
                i = next_i
                next_i += 1
                body = {"job_type": "noop", "payload": kit.payload(i)}
                response = await http.post("/jobs", json=body)
                if response.status_code != 201:
                    errors += 1

        t_start = time.time()
        await asyncio.gather(*(submitter() for _ in range(args.concurrency)))
        t_end = time.time()
    return {"t_start": t_start, "t_end": t_end, "sent": next_i, "errors": errors}


def main() -> int:
    args = kit.parse_args(tuple(CONFIGS), extra_commands=("serve", "load", "configure"))
    kit.setup_logging()
    if args.command == "worker":
        return run_worker(args)
    if args.command == "serve":
        serve(args)
        return 0
    if args.command == "load":
        kit.emit(asyncio.run(load(args)))
        return 0
    kit.emit(asyncio.run(client_command(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
