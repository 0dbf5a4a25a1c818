"""The measurement behind the claim's shape: one claim per queue, not one for every queue.

Statement latency on PostgreSQL of claims of up to ``--limit`` jobs, in the same fresh
database (the package's schema, made by its own ``migrate`` command) and on the same rows:

- **A**: the previous runtime's claim (``job_claim`` at commit 8398133, its text read with
  ``git show``): every queue at once, no queue settings. It ran with PostgreSQL's default
  ``plan_cache_mode = auto``, and so it is measured here; it reads the index
  ``equeue_jobs_claimable_idx`` that the new schema dropped, created for its runs only.
- **B**: one statement that claims from every queue (a skip scan of the claimable index for the
  queue names, a LATERAL per queue limited by that queue's room, merged by priority): the
  rejected alternative, its text below.
- **C**: the package's own claim (``load_queries('postgres')``, ``positional()``), one queue per
  claim, as its producer chooses it: ``job_claim`` for a queue without settings,
  ``job_claim_limited`` for one with a limit. With several queues, "every queue" is one claim
  per queue the package would claim from (a paused queue's producer does not claim), timed
  call by call and summed.
- **L**: ``job_claim_limited`` for every queue, limited or not: what a single statement that
  always enforces the settings would cost the queues that have none.

B, C and L run with ``plan_cache_mode = force_generic_plan``, as the package's connections do.
Every call is a prepared statement (asyncpg, as the package) in a transaction that is rolled
back, so the table is the same for every call; the per-call times of ``--rounds`` rounds, the
shapes' order rotating every round and the table vacuumed before each shape's turn, are pooled
and their median reported.

Run it with the package's interpreter:
``python bench/claim_shapes.py --dsn postgresql://postgres@127.0.0.1:5432/postgres``.
It creates and drops its own database; only a loopback server is ever contacted.
"""

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from fastapi_equeue.backends._queries import load_queries, positional

REPO = Path(__file__).resolve().parent.parent
OLD_COMMIT = "8398133"
OLD_INDEX = (
    "CREATE INDEX equeue_jobs_claimable_idx ON equeue_jobs (priority DESC, scheduled_at, id) "
    "WHERE status IN ('queued', 'retrying')"
)
RATE_MARGIN = 0.05

# B: the rejected alternative (prototype /work/proto/claim_b.sql, copied as it was measured):
# one statement for every queue. $1 the queues (text[], NULL: every queue with claimable jobs),
# $2 the limit, $3 the worker's id, $4 the rate margin (seconds), $5 now (NULL: the database's).
CLAIM_B = """
WITH RECURSIVE
clock AS (
    SELECT coalesce(CAST($5 AS timestamptz), now()) AS now
),
found (queue) AS (
    (SELECT queue FROM equeue_jobs WHERE status IN ('queued', 'retrying') ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM equeue_jobs AS j
            WHERE j.status IN ('queued', 'retrying') AND j.queue > found.queue
            ORDER BY j.queue LIMIT 1)
    FROM found WHERE found.queue IS NOT NULL
),
names AS (
    SELECT queue FROM found WHERE queue IS NOT NULL AND CAST($1 AS text[]) IS NULL
    UNION ALL
    SELECT unnest(CAST($1 AS text[]))
),
held AS (
    SELECT q.name, q.claimed_total, q.starts
    FROM equeue_queues AS q
    WHERE q.name IN (SELECT queue FROM names)
      AND (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)
    ORDER BY q.name
    FOR UPDATE
),
room AS (
    SELECT n.queue, CASE
        WHEN s.paused THEN 0
        ELSE least(
            $2,
            CASE WHEN s.concurrency IS NOT NULL THEN
                s.concurrency - (h.claimed_total - s.claimed_total)
                - (SELECT count(*) FROM equeue_jobs WHERE queue = n.queue AND status = 'processing')
            END,
            CASE WHEN s.rate_limit IS NOT NULL THEN
                s.rate_limit - (
                    SELECT coalesce(sum(CAST(e ->> 1 AS integer)), 0)
                    FROM jsonb_array_elements(h.starts) AS e, clock
                    WHERE CAST(e ->> 0 AS double precision)
                          > extract(epoch FROM clock.now) - s.rate_period - $4)
            END)
        END AS n
    FROM names AS n
    LEFT JOIN equeue_queues AS s ON s.name = n.queue
    LEFT JOIN held AS h ON h.name = n.queue
),
due AS (
    SELECT d.id, d.queue
    FROM room AS r
    CROSS JOIN LATERAL (
        SELECT j.id, j.queue, j.priority, j.scheduled_at
        FROM equeue_jobs AS j, clock
        WHERE j.queue = r.queue AND j.status IN ('queued', 'retrying')
          AND j.scheduled_at <= clock.now
        ORDER BY j.priority DESC, j.scheduled_at, j.id
        LIMIT greatest(r.n, 0)
        FOR UPDATE OF j SKIP LOCKED
    ) AS d
    WHERE r.n > 0 AND EXISTS (SELECT 1 FROM equeue_workers WHERE id = CAST($3 AS uuid))
    ORDER BY d.priority DESC, d.scheduled_at, d.id
    LIMIT $2
),
claimed AS (
    UPDATE equeue_jobs AS j
    SET status = 'processing', attempts = j.attempts + 1, started_at = clock.now,
        worker_id = CAST($3 AS uuid)
    FROM clock
    WHERE j.id = ANY(ARRAY(SELECT id FROM due))
    RETURNING j.*
),
noted AS (
    UPDATE equeue_queues AS q
    SET claimed_total = q.claimed_total + c.n,
        starts = CASE WHEN q.rate_limit IS NULL THEN '[]'::jsonb ELSE (
            SELECT coalesce(jsonb_agg(e), '[]'::jsonb)
            FROM jsonb_array_elements(q.starts) AS e
            WHERE CAST(e ->> 0 AS double precision)
                  > extract(epoch FROM clock.now) - q.rate_period - $4
        ) || jsonb_build_array(jsonb_build_array(extract(epoch FROM clock.now), c.n)) END
    FROM (SELECT queue, count(*) AS n FROM claimed GROUP BY queue) AS c, clock
    WHERE q.name = c.queue AND q.name IN (SELECT name FROM held)
)
SELECT * FROM claimed
"""


@dataclass(frozen=True)
class Scenario:
    title: str
    jobs: dict[str, int]
    """Due jobs per queue."""
    settings: tuple[str, ...] = ()
    """Statements that set the queues' settings."""
    paused: tuple[str, ...] = ()
    limited: bool = False
    """Whether 'default' has a limit: its producer then claims with job_claim_limited."""


SCENARIOS = (
    Scenario("1 queue, 10,000 due, no settings", {"default": 10_000}),
    Scenario(
        "4 queues x 2,500 due, no settings", {"a": 2_500, "b": 2_500, "c": 2_500, "default": 2_500}
    ),
    Scenario(
        "paused 'bulk' 100,000 + 'default' 2,500",
        {"bulk": 100_000, "default": 2_500},
        ("INSERT INTO equeue_queues (name, paused) VALUES ('bulk', true)",),
        paused=("bulk",),
    ),
    Scenario(
        "'default' 10,000, concurrency 20",
        {"default": 10_000},
        ("INSERT INTO equeue_queues (name, concurrency) VALUES ('default', 20)",),
        limited=True,
    ),
    Scenario(
        "'default' 10,000, rate 1000/second",
        {"default": 10_000},
        ("INSERT INTO equeue_queues (name, rate_limit, rate_period) VALUES ('default', 1000, 1)",),
        limited=True,
    ),
)


@dataclass
class Timings:
    """Per-call seconds of one measured thing, pooled over rounds, and the rows it claimed."""

    calls: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    claimed: set[int] = field(default_factory=set)
    from_paused: set[int] = field(default_factory=set)

    def add_round(self, seconds: list[float]) -> None:
        self.calls += seconds
        self.round_medians.append(statistics.median(seconds))

    def cell(self) -> str:
        if not self.calls:
            return "-"
        us = statistics.median(self.calls) * 1e6
        lo, hi = min(self.round_medians) * 1e6, max(self.round_medians) * 1e6
        jobs = "/".join(str(n) for n in sorted(self.claimed))
        text = f"{us:,.0f} µs ({lo:,.0f} to {hi:,.0f}); {jobs} jobs"
        if any(self.from_paused):
            text += f", {'/'.join(str(n) for n in sorted(self.from_paused))} of a paused queue"
        return text


def old_claim() -> str:
    """The previous runtime's ``job_claim``, read from git as its loader would cut it."""
    text = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "show",
            f"{OLD_COMMIT}:fastapi_equeue/backends/postgres/queries.sql",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    match = re.search(
        r"^-- name: job_claim\s*\n--[^\n]*\n(.*?)(?=^-- name: |\Z)", text, re.M | re.S
    )
    if match is None:
        raise SystemExit(f"no job_claim at {OLD_COMMIT}")
    return match[1].strip().removesuffix(";").strip()


def with_database(admin_dsn: str, name: str) -> str:
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{name}"


def migrate(dsn: str) -> None:
    url = "postgresql+asyncpg://" + dsn.removeprefix("postgresql://")
    subprocess.run(
        [sys.executable, "-m", "fastapi_equeue", "migrate", "--database-url", url],
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )


async def fill(conn: asyncpg.Connection, scenario: Scenario) -> None:
    """The scenario's due jobs (scheduled in the hour before now, a millisecond apart)."""
    await conn.execute("TRUNCATE equeue_jobs, equeue_queues")
    for queue, n in scenario.jobs.items():
        await conn.execute(
            "INSERT INTO equeue_jobs (id, job_type, queue, payload, max_attempts, created_at, "
            "scheduled_at) SELECT gen_random_uuid(), 'noop', $1, jsonb_build_object('i', g, 't', "
            "0), 3, now() - interval '1 hour', now() - interval '1 hour' + g * interval '1 ms' "
            "FROM generate_series(1, $2) AS g",
            queue,
            n,
        )
    for statement in scenario.settings:
        await conn.execute(statement)
    await conn.execute("VACUUM ANALYZE equeue_jobs")
    await conn.execute("VACUUM ANALYZE equeue_queues")


class Shapes:
    """The three claims, on their connections, and how to time them."""

    def __init__(
        self, generic: asyncpg.Connection, auto: asyncpg.Connection, worker: str, limit: int
    ):
        self.generic = generic
        self.auto = auto
        self.worker = worker
        self.limit = limit
        self.old_sql = positional(old_claim())  # type: ignore[arg-type]
        queries = load_queries("postgres")
        self.new_sql = {
            False: positional(queries["job_claim"]),
            True: positional(queries["job_claim_limited"]),
        }

    def old_args(self) -> list[Any]:
        values = {"worker_id": self.worker, "limit": self.limit}
        return [values[n] for n in self.old_sql[1]]

    def new_args(self, queue: str, limited: bool) -> list[Any]:
        values = {
            "queue": queue,
            "limit": self.limit,
            "worker_id": self.worker,
            "now": None,
            "rate_margin": RATE_MARGIN,
        }
        return [values[n] for n in self.new_sql[limited][1]]

    async def once(
        self, conn: asyncpg.Connection, sql: str, args: Sequence[Any]
    ) -> tuple[float, list[Any]]:
        """One claim in a transaction that is rolled back: its seconds and its rows."""
        tr = conn.transaction()
        await tr.start()
        try:
            t0 = time.perf_counter()
            rows = await conn.fetch(sql, *args)
            seconds = time.perf_counter() - t0
        finally:
            await tr.rollback()
        return seconds, [r for r in rows if r["id"] is not None]


async def vacuum(conn: asyncpg.Connection) -> None:
    """Rolled-back claims leave dead row versions: clear them before each shape's turn."""
    await conn.execute("VACUUM equeue_jobs")
    await conn.execute("VACUUM equeue_queues")


async def measure(
    shapes: Shapes,
    admin: asyncpg.Connection,
    scenario: Scenario,
    rounds: int,
    calls: int,
    warmup: int,
) -> dict[str, Timings]:
    queues = sorted(scenario.jobs)
    served = [q for q in queues if q not in scenario.paused]
    out = {"A": Timings(), "B": Timings(), "C": Timings(), "C*": Timings(), "L": Timings()}

    def note(key: str, rows: list[Any]) -> None:
        out[key].claimed.add(len(rows))
        out[key].from_paused.add(sum(r["queue"] in scenario.paused for r in rows))

    async def run_a() -> None:
        await admin.execute(OLD_INDEX)
        try:
            sql, args = shapes.old_sql[0], shapes.old_args()
            times = []
            for i in range(warmup + calls):
                seconds, rows = await shapes.once(shapes.auto, sql, args)
                if i >= warmup:
                    times.append(seconds)
                    note("A", rows)
            out["A"].add_round(times)
        finally:
            await admin.execute("DROP INDEX equeue_jobs_claimable_idx")

    async def run_b() -> None:
        times = []
        for i in range(warmup + calls):
            seconds, rows = await shapes.once(
                shapes.generic, CLAIM_B, (None, shapes.limit, shapes.worker, RATE_MARGIN, None)
            )
            if i >= warmup:
                times.append(seconds)
                note("B", rows)
        out["B"].add_round(times)

    async def run_c() -> None:
        one, every = [], []
        for i in range(warmup + calls):
            total, taken = 0.0, 0
            for queue in served:
                limited = scenario.limited and queue == "default"
                sql, args = shapes.new_sql[limited][0], shapes.new_args(queue, limited)
                seconds, rows = await shapes.once(shapes.generic, sql, args)
                total += seconds
                taken += len(rows)
                if i >= warmup and queue == "default":
                    one.append(seconds)
                    note("C", rows)
            if i >= warmup:
                every.append(total)
                out["C*"].claimed.add(taken)
        out["C"].add_round(one)
        out["C*"].add_round(every)

    async def run_l() -> None:
        sql, args = shapes.new_sql[True][0], shapes.new_args("default", True)
        times = []
        for i in range(warmup + calls):
            seconds, rows = await shapes.once(shapes.generic, sql, args)
            if i >= warmup:
                times.append(seconds)
                note("L", rows)
        out["L"].add_round(times)

    runs = {"A": run_a, "B": run_b, "C": run_c, "L": run_l}
    order = list(runs)
    for r in range(rounds):
        shift = r % len(order)
        for key in order[shift:] + order[:shift]:
            await vacuum(admin)
            await runs[key]()
    return out


async def plan_modes(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SHOW plan_cache_mode"))


async def main_async(args: argparse.Namespace) -> int:
    name = f"claim_shapes_{uuid.uuid4().hex[:8]}"
    admin_server = await asyncpg.connect(args.dsn)
    await admin_server.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(args.dsn, name)
    try:
        migrate(dsn)
        admin = await asyncpg.connect(dsn)
        generic = await asyncpg.connect(dsn)
        auto = await asyncpg.connect(dsn)
        await generic.execute("SET plan_cache_mode = force_generic_plan")
        worker = str(uuid.uuid4())
        await admin.execute(
            "INSERT INTO equeue_workers (id, hostname, pid, concurrency) "
            "VALUES ($1::uuid, 'claim_shapes', 0, 10)",
            worker,
        )
        shapes = Shapes(generic, auto, worker, args.limit)
        version = await admin.fetchval("SHOW server_version")
        modes = f"A: {await plan_modes(auto)}; B, C, L: {await plan_modes(generic)}"
        print(
            f"PostgreSQL {version}; plan_cache_mode {modes}; limit {args.limit}; "
            f"{args.rounds} rounds x {args.calls} calls (+{args.warmup} warm-up) per shape",
            file=sys.stderr,
            flush=True,
        )
        results = []
        for scenario in SCENARIOS:
            await fill(admin, scenario)
            started = time.monotonic()
            found = await measure(shapes, admin, scenario, args.rounds, args.calls, args.warmup)
            print(
                f"  {scenario.title}: {time.monotonic() - started:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            results.append((scenario, found))
        for conn in (admin, generic, auto):
            await conn.close()
    finally:
        await admin_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_server.close()
    print(
        f"Claim of up to {args.limit} jobs: median of every call's time over {args.rounds} "
        f"rounds x {args.calls} calls, (the rounds' medians, lowest to highest); jobs claimed.\n"
    )
    print(
        "| scenario | A: previous claim, every queue (auto plans) | B: one statement, every "
        "queue (rejected) | C: package, 'default' | C: one claim per served queue, summed | "
        "L: job_claim_limited, 'default' |"
    )
    print("|---|---|---|---|---|---|")
    for scenario, found in results:
        cells = [found[k].cell() for k in ("A", "B", "C", "C*", "L")]
        print(f"| {scenario.title} | " + " | ".join(cells) + " |")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--limit", type=int, default=10)
    args = p.parse_args()
    host = args.dsn.split("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        p.error(f"a loopback server only, not {host!r}")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
