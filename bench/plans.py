"""The "Query plans" section of the report: each hot statement's EXPLAIN, what to look for in
it, and the facts read from the plan itself (indexes used, sorts, scans, buffers)."""

import re
from typing import Any

from libraries import EQUEUE

# What each plan should show; the "seen" line under it is read from the plan itself.
LOOK_FOR = {
    "job_claim": (
        "The `due` CTE should read `equeue_jobs_queue_claimable_idx` (the partial index of queued "
        "and retrying rows, by queue in the claim's order) under Limit and LockRows, with no Sort "
        "and no Seq Scan: its rows and buffers stay in the tens however many finished rows the "
        "table holds. The queue's settings are read through `equeue_queues_pkey` (the counting "
        "subqueries are never executed for a queue without limits). The InitPlan on "
        "`equeue_workers_pkey` is the one-time check that the worker is registered (a worker "
        "declared lost claims nothing)."
    ),
    "job_complete_many": (
        "Each outcome should reach its row through an index (the primary key, or the partial "
        "index of processing rows), with no Seq Scan over `equeue_jobs`: the Update's rows and "
        "buffers grow with the batch, not with the table."
    ),
    "job_insert": (
        "One row inserted, `equeue_jobs_idempotency_key_idx` as the conflict arbiter; its buffers "
        "are the heap page plus a leaf of every index on `equeue_jobs`, each index a cost paid "
        "on every enqueue."
    ),
    "job_insert_many": (
        "A Function Scan of `unnest` feeding one Insert of every row (no per-row statement), "
        "`equeue_jobs_idempotency_key_idx` as the arbiter, and one HashAggregate of the queues "
        "for the NOTIFY: one notification per queue per batch, not per job."
    ),
    "job_prune": (
        "Each CTE (completed and cancelled jobs, failed jobs) should be a range scan of "
        "`equeue_jobs_finished_idx` (status, finished_at) bounded by the cut-off, so that a "
        "prune with nothing past its retention reads a few index pages, not the table: no Seq "
        "Scan on `equeue_jobs`."
    ),
}
_INDEX = re.compile(r"\busing (\w+)|Conflict Arbiter Indexes: ([\w, ]+)")
_SORT = re.compile(r"^\s*(?:->\s+)?(?:Incremental )?Sort \(", re.MULTILINE)
_BUFFERS = re.compile(r"Buffers: (.+)")
_EXECUTION = re.compile(r"Execution Time: (.+)")


def seen(plan: str) -> str:
    """The facts the "look for" sentences ask about, read from a plan's text."""
    indexes: list[str] = []
    for match in _INDEX.finditer(plan):
        for name in (match[1] or match[2]).split(", "):
            if name not in indexes:
                indexes.append(name)
    scans = plan.count(f"Seq Scan on {EQUEUE.tables[0]} ")
    buffers = _BUFFERS.search(plan)
    execution = _EXECUTION.search(plan)
    return "; ".join(
        [
            "indexes in the plan " + (", ".join(f"`{name}`" for name in indexes) or "none"),
            f"Sort nodes: {len(_SORT.findall(plan))}",
            f"Seq Scans on `{EQUEUE.tables[0]}`: {scans}",
            f"buffers (whole statement): {buffers[1] if buffers else '?'}",
            f"execution {execution[1] if execution else '?'}",
        ]
    )


def plans_section(notes: dict[str, Any]) -> list[str]:
    lines = ["## Query plans", ""]
    found = notes.get("plans")
    if not found:
        lines.append(
            "Not measured in this run: fastapi_equeue was not benchmarked, the step failed (see "
            "the failures below), or the run predates the query plans."
        )
        return lines
    rows = ", ".join(f"{count:,} {status}" for status, count in found["rows"].items())
    where = (
        "They ran on a copy of the big-history database with the processing scenario's backlog "
        "queued"
        if found["big"]
        else "This run has no big history for fastapi_equeue (`--no-big`, `big` not among the "
        "scenarios, or its build failed), so they ran on a small fresh database: "
        f"{found['history']:,} completed jobs made as the big history's are, plus the processing "
        "scenario's backlog; the big table's plans may differ"
    )
    mode = found.get("plan_cache_mode")
    how = (
        f"prepared with `$n` parameters and run with `plan_cache_mode = {mode}`, as the "
        "package's own PostgreSQL connections run them (the plans are the generic ones every "
        "call uses)"
        if mode
        else "bound with literal values"
    )
    lines.append(
        "`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)` of fastapi_equeue's hot statements, their text "
        f"read from the package's `queries.sql` at run time, {how}, each in a transaction that "
        "was rolled back (ANALYZE runs the writes). Each ran twice; the plan shown is the "
        f"second's (a warm cache). {where}. `{EQUEUE.tables[0]}` held {rows} "
        f"({found['size']} with its indexes)."
    )
    for entry in found["plans"]:
        lines += ["", f"### `{entry['name']}`: {entry['title']}", ""]
        if "plan" not in entry:
            lines.append(f"Not explained: {entry.get('error', 'no plan')}.")
            continue
        look = LOOK_FOR.get(entry["name"], "")
        lines += [f"{look} Seen: {seen(entry['plan'])}.".strip(), "", "```text", entry["plan"]]
        lines.append("```")
    return lines
