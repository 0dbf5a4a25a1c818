"""The results as one table of medians (with ratios to the best peer) and one of the issue's
targets, a Markdown report with the query plans and the machine and PostgreSQL facts, and a
matplotlib plot."""

import argparse
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libraries import OURS, Library
from plans import plans_section

if TYPE_CHECKING:
    from run import Results


@dataclass(frozen=True)
class Row:
    metric: str
    label: str
    unit: str
    higher_is_better: bool
    ours_only: bool = False
    digits: int = 0


def rows(args: argparse.Namespace) -> list[Row]:
    big = f"{args.big_rows:,}"
    jobs = f"{args.jobs:,}"
    return [
        Row("enqueue", f"enqueue, 1 job per call (N={args.n:,})", "jobs/s", True),
        Row("bulk", "enqueue, bulk API, 1,000 per call", "jobs/s", True),
        Row("process.default.db", f"processing {jobs} jobs, default config", "jobs/s", True),
        Row("process.c10.db", "processing, concurrency 10", "jobs/s", True),
        Row("process.c50.db", "processing, concurrency 50", "jobs/s", True),
        Row("latency.p50", "pickup latency p50 (idle worker)", "ms", False, digits=1),
        Row("latency.p95", "pickup latency p95", "ms", False, digits=1),
        Row("latency.p99", "pickup latency p99", "ms", False, digits=1),
        Row("process.default.rss", "worker peak RSS under load (default)", "MiB", False, digits=1),
        Row("rss.idle", "worker peak RSS idle (after latency run)", "MiB", False, digits=1),
        Row("claim.p99", "claim 1 job p99, no history", "ms", False, digits=2),
        Row("big.claim.p99", f"claim 1 job p99, {big} finished jobs", "ms", False, digits=2),
        Row("big.process", f"processing {jobs} jobs on {big} finished", "jobs/s", True),
        Row("sqlite.enqueue", "SQLite: enqueue, 1 job per call", "jobs/s", True, True),
        Row("sqlite.bulk", "SQLite: enqueue, bulk 1,000 per call", "jobs/s", True, True),
        Row("sqlite.process", f"SQLite: processing {jobs} jobs (db)", "jobs/s", True, True),
        Row("two.process", "PostgreSQL, 2 worker processes (db)", "jobs/s", True, True),
        Row(
            "limited.process",
            "PostgreSQL, 2 worker processes, global concurrency 20 (db)",
            "jobs/s",
            True,
            True,
        ),
        Row("mixed.submit", "mixed: REST submissions (16 conns)", "jobs/s", True, True),
        Row("mixed.drain", "mixed: jobs drained while submitting", "jobs/s", True, True),
    ]


def median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def best_peer(
    results: "Results", metric: str, libs: list[Library], higher_is_better: bool
) -> tuple[str, float] | None:
    """The best median of the libraries other than fastapi_equeue on ``metric``, and whose."""
    by_lib = results.values.get(metric, {})
    peers = {
        lib.name: value
        for lib in libs
        if lib.name != OURS and (value := median(by_lib.get(lib.name)))
    }
    if not peers:
        return None
    pick = max if higher_is_better else min
    name = pick(peers, key=lambda name: peers[name])
    return name, peers[name]


def cells(results: "Results", row: Row, libs: list[Library]) -> tuple[list[str], str]:
    """One row's cells (value and ratio to the best peer) and the best peer's name."""
    by_lib = results.values.get(row.metric, {})
    medians = {lib.name: median(by_lib.get(lib.name)) for lib in libs}
    peer = None if row.ours_only else best_peer(results, row.metric, libs, row.higher_is_better)
    best_name, best = peer if peer else ("", None)
    out = []
    for lib in libs:
        value = medians[lib.name]
        text = number(value, row.digits)
        if value is not None and best:
            text += f" ({value / best:.2f}x)"
        out.append(text)
    return out, best_name


def table(results: "Results", libs: list[Library], args: argparse.Namespace) -> list[list[str]]:
    header = ["scenario", "unit", *(lib.name for lib in libs), "best peer"]
    body = []
    for row in rows(args):
        if row.metric not in results.values:
            continue
        values, best = cells(results, row, libs)
        arrow = "higher" if row.higher_is_better else "lower"
        body.append([row.label, f"{row.unit} ({arrow} better)", *values, best])
    return [header, *body]


@dataclass(frozen=True)
class Target:
    """A goal of the issue: a ratio to the best peer (``ratio``) or a bound (``limit``)."""

    label: str
    metric: str
    unit: str
    higher_is_better: bool
    ratio: float | None = None
    limit: float | None = None
    strict: bool = False
    """``<`` / ``>`` rather than ``<=`` / ``>=``."""
    needs_big: bool = False
    """Stated for a history of ``TARGET_BIG_ROWS`` finished jobs."""
    digits: int = 0


TARGET_BIG_ROWS = 10_000_000


def targets(args: argparse.Namespace) -> list[Target]:
    big = f"{args.big_rows:,}"
    return [
        Target("processing, default config", "process.default.db", "jobs/s", True, ratio=2.0),
        Target("processing, concurrency 10", "process.c10.db", "jobs/s", True, ratio=2.0),
        Target("processing, concurrency 50", "process.c50.db", "jobs/s", True, ratio=2.0),
        Target(f"processing on {big} finished", "big.process", "jobs/s", True, ratio=2.0,
               needs_big=True),
        Target("pickup latency p50", "latency.p50", "ms", False, limit=1.2, digits=2),
        Target("pickup latency p99", "latency.p99", "ms", False, limit=2.5, digits=2),
        Target("enqueue, 1 job per call", "enqueue", "jobs/s", True, ratio=1.0),
        Target("enqueue, bulk 1,000 per call", "bulk", "jobs/s", True, ratio=1.5),
        Target(f"claim 1 job p99, {big} finished", "big.claim.p99", "ms", False, limit=10.0,
               strict=True, needs_big=True, digits=2),
        Target("SQLite processing, one process", "sqlite.process", "jobs/s", True, limit=3000.0),
        Target("worker peak RSS idle", "rss.idle", "MiB", False, limit=60.0, digits=1),
    ]  # fmt: skip


def goal(target: Target) -> str:
    if target.ratio is not None:
        return f">= {target.ratio:.1f}x the best peer"
    sign = (">" if target.higher_is_better else "<") + ("" if target.strict else "=")
    return f"{sign} {target.limit:,g} {target.unit}"


def reached(target: Target, value: float, bound: float) -> bool:
    if target.higher_is_better:
        return value > bound if target.strict else value >= bound
    return value < bound if target.strict else value <= bound


def verdict(target: Target, ours: float | None, ratio: float | None, big_rows: int) -> str:
    """met, missed, or why it could not be judged."""
    if ours is None:
        return "not measured"
    if target.needs_big and big_rows < TARGET_BIG_ROWS:
        return f"not measured at {TARGET_BIG_ROWS:,} rows"
    if target.ratio is not None:
        if ratio is None:
            return "not measured (no peer)"
        return "met" if reached(target, ratio, target.ratio) else "missed"
    assert target.limit is not None
    return "met" if reached(target, ours, target.limit) else "missed"


def target_table(
    results: "Results", libs: list[Library], args: argparse.Namespace
) -> list[list[str]]:
    """One row per target: fastapi_equeue's median, the best peer's, the ratio, the verdict."""
    header = ["target", "goal", OURS, "best peer", "ratio", "result"]
    body = []
    for target in targets(args):
        ours = median(results.values.get(target.metric, {}).get(OURS))
        peer = best_peer(results, target.metric, libs, target.higher_is_better)
        ratio = ours / peer[1] if ours is not None and peer else None
        body.append(
            [
                target.label,
                goal(target),
                "not measured" if ours is None else f"{number(ours, target.digits)} {target.unit}",
                f"{peer[0]} {number(peer[1], target.digits)} {target.unit}" if peer else "-",
                "-" if ratio is None else f"{ratio:.2f}x",
                verdict(target, ours, ratio, args.big_rows),
            ]
        )
    return [header, *body]


def text_grid(grid: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    lines = []
    for index, r in enumerate(grid):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def console_table(results: "Results", libs: list[Library], args: argparse.Namespace) -> str:
    """The medians table, then the targets, as plain text."""
    lines = [f"medians of {args.rounds} round(s); (x) = ratio to the best peer"]
    lines += text_grid(table(results, libs, args))
    lines += ["", "targets"]
    lines += text_grid(target_table(results, libs, args))
    return "\n".join(lines)


def markdown_table(grid: list[list[str]]) -> str:
    lines = ["| " + " | ".join(grid[0]) + " |", "|" + "---|" * len(grid[0])]
    lines += ["| " + " | ".join(r) + " |" for r in grid[1:]]
    return "\n".join(lines)


def detail_table(results: "Results", libs: list[Library]) -> str:
    """Processing per library and config: db and exec rates, CPU, RSS (medians)."""
    grid = [
        [
            "library",
            "config",
            "db jobs/s",
            "exec jobs/s",
            "worker CPU s",
            "postgres CPU s",
            "peak RSS MiB",
            "duplicates",
        ]
    ]
    for lib in libs:
        for config in lib.configs:
            prefix = f"process.{config.label}."

            def get(name: str, digits: int, lib: Library = lib, prefix: str = prefix) -> str:
                return number(median(results.values.get(prefix + name, {}).get(lib.name)), digits)

            if get("db", 0) == "-":
                continue
            grid.append(
                [
                    lib.name,
                    f"{config.label}: {config.description}",
                    get("db", 0),
                    get("exec", 0),
                    get("cpu", 2),
                    get("pg_cpu", 2),
                    get("rss", 1),
                    get("duplicates", 0),
                ]
            )
    return markdown_table(grid)


def targets_section(results: "Results", libs: list[Library], args: argparse.Namespace) -> list[str]:
    grid = target_table(results, libs, args)
    verdicts = [r[-1] for r in grid[1:]]
    judged = sum(v in ("met", "missed") for v in verdicts)
    return [
        "## Targets",
        "",
        "The issue's goals, judged on the medians above. A ratio is fastapi_equeue's median over "
        "the best peer's on the same row of the same run (for processing, the same config "
        "label); a goal in ms or MiB is absolute, its ratio shown for comparison. The big-history "
        f"goals are stated for {TARGET_BIG_ROWS:,} finished jobs and are not judged on fewer. "
        f"Met: {verdicts.count('met')} of {judged} judged, {len(verdicts) - judged} not measured.",
        "",
        markdown_table(grid),
    ]


def plot(results: "Results", libs: list[Library], jobs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [lib.name for lib in libs]

    def med(metric: str, name: str) -> float:
        return median(results.values.get(metric, {}).get(name)) or 0.0

    panels: list[tuple[str, str, list[tuple[str, str]], bool]] = [
        (
            "enqueue (jobs/s, log)",
            "jobs/s",
            [("enqueue", "1 per call"), ("bulk", "bulk 1,000")],
            True,
        ),
        (
            "processing 10k no-op jobs (jobs/s)",
            "jobs/s",
            [
                ("process.default.db", "default"),
                ("process.c10.db", "c10"),
                ("process.c50.db", "c50"),
                ("big.process", "default, big history"),
            ],
            False,
        ),
        (
            "pickup latency, idle worker (ms)",
            "ms",
            [("latency.p50", "p50"), ("latency.p95", "p95"), ("latency.p99", "p99")],
            False,
        ),
        (
            "claim of one job, p99 (ms)",
            "ms",
            [("claim.p99", "no history"), ("big.claim.p99", "big history")],
            False,
        ),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for ax, (title, unit, series, log) in zip(axes.flat, panels, strict=True):
        width = 0.8 / len(series)
        for k, (metric, label) in enumerate(series):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, [med(metric, n) for n in names], width, label=label)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=15)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("fastapi_equeue and its peers on one PostgreSQL (medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def limited_peak(results: "Results") -> str:
    """The limited run's check: the most jobs seen processing at once, over its rounds."""
    peaks = results.values.get("limited.peak", {}).get(OURS)
    if not peaks:
        return ""
    return f", the most seen processing at once (sampled every 20 ms) {max(peaks):.0f}"


def write_markdown(
    results: "Results", libs: list[Library], args: argparse.Namespace, path: Path
) -> None:
    notes: dict[str, Any] = results.notes
    png = path.with_suffix(".png")
    plot(results, libs, args.jobs, png)
    machine = notes["machine"]
    pg = notes["postgres"]
    versions = notes["versions"]
    settings = ", ".join(f"{k}={v}" for k, v in pg.items() if k != "server_version")
    history = notes.get("history", {})
    run_args = notes["args"]
    shown = (
        "rounds",
        "n",
        "bulk_calls",
        "jobs",
        "latency_jobs",
        "claims",
        "big_rows",
        "mixed_jobs",
        "libs",
        "scenarios",
        "configs",
        "quick",
    )
    options = " ".join(f"{k}={run_args[k]}" for k in shown)
    lines = [
        "# Benchmarks",
        "",
        "*Written by `nox -s bench` (bench/run.py); do not edit by hand.* Generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {notes['elapsed'] / 60:.1f} min.",
        "",
        f"Medians over {args.rounds} round(s); the libraries interleaved, their order rotating "
        "every round. `(x)` is the ratio to the best peer (the best of the libraries other than "
        "fastapi_equeue) on that row: above 1 is better for jobs/s, below 1 better for ms and "
        "MiB. The method: a fresh database per measurement, no-op `async` tasks, payload "
        '`{"i": n, "t": time.time()}`, one worker process, t0 in the worker just before the '
        "library's start call. [performance.md](performance.md) explains the hot path, what "
        "profiling found and what limits the targets still missed.",
        "",
        markdown_table(table(results, libs, args)),
        "",
        f"![benchmarks]({png.name})",
        "",
        *targets_section(results, libs, args),
        "",
        "## Processing in detail",
        "",
        "*db*: jobs / time until the database shows every job finished (polled every 20 ms); "
        "*exec*: jobs / time the last task body ran. Worker CPU from `wait4`, PostgreSQL CPU "
        "summed over every `postgres` process, peak RSS from `VmHWM`.",
        "",
        detail_table(results, libs),
        "",
        "## What each scenario does",
        "",
        f"- **enqueue**: {args.n:,} sequential single enqueues from one coroutine after one "
        f"warm-up call; **bulk**: the library's bulk API, {args.bulk_calls} calls of 1,000.",
        f"- **processing**: {args.jobs:,} jobs pre-queued with the bulk API, `VACUUM ANALYZE`, "
        "then one worker process; counted until the database shows every job finished.",
        f"- **pickup latency**: an idle worker (default config), 3 s to settle, one warm-up job, "
        f"then {args.latency_jobs} enqueues with `sleep(0.02)` after each; latency = task "
        "start - `time.time()` just before the enqueue call (so it includes the enqueue's "
        "round trip).",
        f"- **claim**: {args.claims:,} calls (after 20 warm-ups) of the library's claim of one "
        "job, timed per call in a client process: fastapi_equeue `Backend.job_claim`, "
        "procrastinate `JobManager.fetch_job`, pgqueuer `Queries.dequeue(batch_size=1)`, oban "
        "its internal `Query.fetch_jobs(demand=1)` (no public claim call), chancy "
        "`Worker.fetch_jobs(up_to=1)`.",
        f"- **big history**: {args.big_rows:,} finished jobs inserted with `INSERT ... SELECT "
        "generate_series` (1M per statement) into a template database built once per "
        "library, copied per round (`CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY`); then "
        "processing at the default config and the claim timing as above.",
        "- **fastapi_equeue only**: the same enqueue/bulk/processing on SQLite (a file per "
        "measurement); two standalone worker processes on PostgreSQL; the same two on a queue "
        "whose global concurrency limit is 20 (`client.configure_queue`, set before they start; "
        f"each keeps its local default of 10){limited_peak(results)}; a mixed run where "
        "uvicorn serves `equeue.router` (`concurrency=0`) and a load generator makes "
        f"{args.mixed_jobs:,} `POST /jobs` from 16 concurrent httpx connections on loopback "
        "while one standalone worker drains (submissions/s over the load's span; drained = "
        "jobs / time from the first submission until the database shows all finished).",
        "",
        "## Configurations and fairness notes",
        "",
    ]
    for lib in libs:
        configs = "; ".join(f"{c.label}: {c.description}" for c in lib.configs)
        lines.append(f"- **{lib.name}**: {configs}.")
    lines += [
        "- chancy runs with `eager_polling=True`: without it a worker on a backlog takes only "
        "`concurrency` jobs per 5 s poll. Its logger is at WARNING. It writes completions in "
        "batches every second, so its *db* rate trails its *exec* rate.",
        "- pgqueuer and oban, started through their Python API, install no SIGTERM handler: "
        "the adapters stop them on SIGTERM. Shutdown is after the measurement either way.",
        "- Every process shares the same cores with PostgreSQL, the driver's 20 ms poll and "
        "(in the mixed run) uvicorn and the load generator.",
    ]
    if pg.get("autovacuum") == "off":
        lines.append(
            "- This server runs with `autovacuum=off` (perf.md's had it on): every measurement "
            "gets a fresh database and an explicit `VACUUM ANALYZE` after pre-queueing, so only "
            "dead tuples made during a run are left unvacuumed."
        )
    if history:
        lines += ["", "Big history built per library (once per run):", ""]
        for lib in libs:
            if lib.name in history:
                h = history[lib.name]
                lines.append(
                    f"- {lib.name}: {lib.history_note}; built in {h['seconds']:.0f} s, "
                    f"database {h['size']}."
                )
    lines += ["", *plans_section(notes)]
    if results.failures:
        lines += ["", "## Failures in this run", ""]
        lines += [f"- {failure}" for failure in results.failures]
    if notes.get("skipped"):
        lines += ["", "## Skipped in this run", ""]
        lines += [f"- {note}" for note in notes["skipped"]]
    lines += [
        "",
        "## Machine",
        "",
        "| item | value |",
        "|---|---|",
        f"| CPU | {machine.get('cpu', '?')}, nproc={machine['nproc']} |",
        f"| memory | {machine.get('memory', '?')} |",
        f"| kernel | {machine['kernel']} |",
        f"| PostgreSQL | {pg['server_version']} on 127.0.0.1 |",
        f"| PostgreSQL settings (SHOW) | {settings} |",
    ]
    for lib in libs:
        v = versions.get(lib.name, {})
        pinned = ", ".join(f"{k} {val}" for k, val in v.items())
        lines.append(f"| {lib.name} venv | {pinned} |")
    lines += [
        "",
        "## Rerun",
        "",
        "```bash",
        "nox -s bench                 # the full run: 3 rounds, every library and scenario",
        "nox -s bench -- --quick      # a smoke run in a few minutes",
        "nox -s bench -- --libs fastapi_equeue,pgqueuer --scenarios enqueue,process --rounds 5",
        "nox -s bench -- --no-big     # everything but the big-history scenario (about 10 min)",
        "nox -s bench -- --big-rows 2000000 --json /tmp/bench.json",
        "nox -s bench -- --report-from /tmp/bench.json   # rewrite this file, measure nothing",
        "nox -s bench -- --help       # every option",
        "```",
        "",
        "PostgreSQL must listen on 127.0.0.1:5432 (`--admin-dsn`; trust auth, a database to "
        "connect to for `CREATE DATABASE`). Each library gets its own virtualenv under "
        "`bench/.venvs/` on first use (oban's on Python 3.12: `--python312`); fastapi_equeue "
        "is reinstalled from the working tree every run.",
        "",
        f"This run: `{options}`.",
        "",
    ]
    path.write_text("\n".join(lines))
