"""The standalone worker command: find the ``EQueue``, run its workers until a signal.

Only this command installs signal handlers: SIGTERM or SIGINT stop gracefully (running jobs get
``shutdown_grace``); a second signal stops at once, putting running jobs back.
"""

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from fastapi_equeue.backends.outage import database_errors
from fastapi_equeue.config import DEFAULT_CONCURRENCY
from fastapi_equeue.errors import EQueueError
from fastapi_equeue.queue import EQueue
from fastapi_equeue.runtime.runtime import Runtime

logger = logging.getLogger("fastapi_equeue.worker")


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m fastapi_equeue.worker``."""
    p = argparse.ArgumentParser(
        prog="python -m fastapi_equeue.worker",
        description=(
            "Run fastapi_equeue workers for the EQueue at MODULE:ATTRIBUTE, against its database, "
            "with no web server. SIGTERM or SIGINT shuts down gracefully: running jobs get the "
            "queue's shutdown_grace, then are put back; a second signal stops at once."
        ),
    )
    p.add_argument(
        "target", metavar="MODULE:ATTRIBUTE", help="where the EQueue lives, e.g. myapp.jobs:queue"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="jobs run at once (default: the queue's concurrency, or "
        f"{DEFAULT_CONCURRENCY} if it is 0)",
    )
    p.add_argument(
        "--queues",
        default=None,
        metavar="A,B",
        help="comma-separated queues to take jobs from (default: the queue's, or all)",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return p


def load_queue(target: str) -> EQueue:
    """Import ``module:attribute`` and return the ``EQueue`` found there."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"error: expected MODULE:ATTRIBUTE, got {target!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"error: cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"error: {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, EQueue):
        raise SystemExit(f"error: {target} is a {type(obj).__name__}, not an EQueue")
    return obj


async def serve(queue: EQueue, concurrency: int, queues: tuple[str, ...] | None) -> bool:
    """Run workers until SIGTERM/SIGINT, then shut down as ``shutdown_grace`` says; ``False``
    if the workers ended on their own (a part of them crashed) instead."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        logger.info(
            "received %s; %s",
            signal.Signals(signum).name,
            "shutting down gracefully" if signals == 1 else "stopping now",
        )
        if signals > 1 and running is not None:
            running.stop_now()
        stop.set()

    running: Runtime | None = None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    async with queue.connected(), queue.workers(concurrency, queues) as runtime:
        running = runtime
        signalled = asyncio.ensure_future(stop.wait())
        ready = asyncio.ensure_future(runtime.ready())
        # Until the database is reached, the runtime waits for it (the queue logs each try).
        await asyncio.wait({signalled, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not stop.is_set() and ready.result():
            logger.info(
                "worker running %s with concurrency %d on queues %s",
                runtime.worker_id,
                concurrency,
                ",".join(queues) if queues else "all",
            )
        ended = asyncio.ensure_future(runtime.wait())
        await asyncio.wait({signalled, ended}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        if not stop.is_set():
            # A part of the worker crashed and the rest stopped in order: say so, and exit
            # non-zero, so that a supervisor starts a fresh worker.
            logger.error("worker %s stopped: %s", runtime.worker_id, runtime.failure)
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process's exit code."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    queue = load_queue(args.target)
    concurrency = args.concurrency
    if concurrency is None:
        concurrency = queue.config.concurrency or DEFAULT_CONCURRENCY
    if concurrency < 1:
        raise SystemExit("error: --concurrency must be at least 1")
    queues = queue.config.queues
    if args.queues is not None:
        queues = tuple(q.strip() for q in args.queues.split(",") if q.strip()) or None
    try:
        clean = asyncio.run(serve(queue, concurrency, queues))
    except (EQueueError, *database_errors()) as exc:  # type: ignore[misc]
        # A configuration or connection error: one clear line, not a traceback.
        logger.error("worker stopped: %s: %s", type(exc).__name__, exc)  # noqa: TRY400
        return 2
    return 0 if clean else 1
