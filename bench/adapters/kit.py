"""What every adapter shares: its command line, the no-op task's bookkeeping and the timings.

An adapter is a script run with one library's virtualenv interpreter (``bench/.venvs/<lib>``),
one subprocess per measurement. It imports nothing outside the standard library and that
library, so it runs on Python 3.11 and 3.12 alike. It prints exactly one JSON object on its last
stdout line; everything else goes to stderr.

Commands (``--dsn`` is a libpq URL ``postgresql://user@127.0.0.1:5432/db``):

- ``install``: the library's own schema install;
- ``enqueue --n N``: one warm-up call, then N sequential single enqueues: ``{"rate"}``;
- ``bulk --calls C --size S``: one warm-up call, then C bulk calls of S jobs: ``{"rate"}``;
- ``prequeue --n N``: N jobs through the bulk API, 1,000 per call;
- ``worker --config NAME --jobs N --run-dir D``: one worker; writes ``D/t0`` just before the
  library's start call, ``D/exec`` when the N-th task body ran, and with ``--latency`` the
  pickup latencies of jobs ``i >= 0`` to ``D/latency`` once it has N of them; runs until
  SIGTERM, or ``--max-seconds``;
- ``paced --n N --gap S``: one warm-up job, then N single enqueues with ``sleep(S)`` after each;
- ``claim --n N --warmup W``: W + N calls of the library's claim of one job: ``{"claims"}``
  (seconds per call; the jobs are pre-queued).
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BULK_SIZE = 1000


def payload(i: int) -> dict[str, Any]:
    """The job payload of perf.md: its number and the time just before it is enqueued."""
    return {"i": i, "t": time.time()}


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class Tally:
    """What the worker's no-op task records: executions, distinct jobs, pickup latencies."""

    target: int
    run_dir: Path
    latency: bool
    count: int = 0
    seen: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    finished: bool = False

    def record(self, i: int, t: float) -> None:
        """Called first thing in the task body, with the job's payload."""
        start = time.time()
        if self.latency:
            if i < 0 or self.finished:
                return
            self.latencies.append(start - t)
            if len(self.latencies) >= self.target:
                self.finished = True
                write_atomic(self.run_dir / "latency", json.dumps(self.latencies))
            return
        self.count += 1
        self.seen.add(i)
        if self.count == self.target:
            self.finished = True
            info = {"t": start, "count": self.count, "distinct": len(self.seen)}
            write_atomic(self.run_dir / "exec", json.dumps(info))


TALLY = Tally(target=0, run_dir=Path("."), latency=False)
"""The worker process's tally; ``worker`` sets it up before the library starts."""


def stamp_t0(run_dir: Path) -> None:
    """t0: the time just before the library's start call."""
    write_atomic(run_dir / "t0", repr(time.time()))


def emit(result: dict[str, Any]) -> None:
    """The adapter's answer: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


async def timed_enqueue(n: int, enqueue_one: Callable[[int], Awaitable[Any]]) -> dict[str, Any]:
    """One warm-up call, then ``n`` sequential single enqueues from one coroutine."""
    await enqueue_one(-1)
    t0 = time.perf_counter()
    for i in range(n):
        await enqueue_one(i)
    return {"rate": n / (time.perf_counter() - t0)}


async def timed_bulk(
    calls: int, size: int, enqueue_many: Callable[[list[dict[str, Any]]], Awaitable[Any]]
) -> dict[str, Any]:
    """One warm-up call of one job, then ``calls`` bulk calls of ``size`` jobs each.

    Payloads are built before the clock starts; the library's own conversion is timed.
    """
    await enqueue_many([payload(-1)])
    batches = [[payload(c * size + i) for i in range(size)] for c in range(calls)]
    t0 = time.perf_counter()
    for batch in batches:
        await enqueue_many(batch)
    return {"rate": calls * size / (time.perf_counter() - t0)}


async def prequeue(n: int, enqueue_many: Callable[[list[dict[str, Any]]], Awaitable[Any]]) -> None:
    """``n`` jobs through the bulk API, 1,000 per call."""
    for start in range(0, n, BULK_SIZE):
        await enqueue_many([payload(i) for i in range(start, min(start + BULK_SIZE, n))])


async def paced(n: int, gap: float, enqueue_one: Callable[[int], Awaitable[Any]]) -> None:
    """The latency protocol: one warm-up job, then ``n`` enqueues ``gap`` seconds apart."""
    await enqueue_one(-1)
    await asyncio.sleep(0.5)
    for i in range(n):
        await enqueue_one(i)
        await asyncio.sleep(gap)


async def timed_claims(n: int, warmup: int, claim_one: Callable[[], Awaitable[int]]) -> list[float]:
    """Seconds per call of ``claim_one`` (which must claim exactly one job), after warm-ups."""
    for _ in range(warmup):
        await claim_one()
    times: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = await claim_one()
        times.append(time.perf_counter() - t0)
        if got != 1:
            raise RuntimeError(f"a claim returned {got} jobs, not 1: pre-queue more jobs")
    return times


COMMANDS = ("install", "enqueue", "bulk", "prequeue", "worker", "paced", "claim")


def parse_args(
    configs: tuple[str, ...], extra_commands: tuple[str, ...] = ()
) -> argparse.Namespace:
    """The adapter command line (see the module docstring)."""
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=[*COMMANDS, *extra_commands])
    p.add_argument("--dsn", required=True)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--size", type=int, default=BULK_SIZE)
    p.add_argument("--gap", type=float, default=0.02)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--config", default="default", choices=configs)
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=Path("."))
    p.add_argument("--latency", action="store_true")
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    if args.dsn.startswith("postgres"):
        host = args.dsn.split("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            p.error(f"the benchmark talks to a loopback server only, not {host!r}")
    if args.command == "worker":
        TALLY.target = args.jobs
        TALLY.run_dir = args.run_dir
        TALLY.latency = args.latency
    return args


def run_main(configs: tuple[str, ...], run: Callable[[Any], Awaitable[dict[str, Any]]]) -> int:
    """An adapter's whole command line: parse, quiet the logs, run one command, print its JSON."""
    args = parse_args(configs)
    setup_logging()
    emit(asyncio.run(run(args)))
    return 0


def setup_logging() -> None:
    """Library loggers at WARNING, on stderr."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def start_watchdog(max_seconds: float) -> None:
    """Bound the process in time: SIGTERM to itself after ``max_seconds``, SIGKILL 30 s later."""
    import signal
    import threading

    for delay, signum in ((max_seconds, signal.SIGTERM), (max_seconds + 30, signal.SIGKILL)):
        timer = threading.Timer(delay, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()


async def wait_for_signal() -> None:
    """Return on SIGTERM or SIGINT (for libraries that install no handler of their own)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
