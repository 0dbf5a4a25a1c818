"""EXPLAIN of fastapi_equeue's hot statements (the claim, the batched completion, the insert,
retention's prune) on a realistic table, for the report's "Query plans" section.

The statements are the package's own, read at run time through its query loader in an
interpreter that has the package installed (the fastapi_equeue venv): nothing here copies its SQL.
They run as the package runs them: prepared with ``$n`` parameters on a connection with
``plan_cache_mode = force_generic_plan`` (what the package sets on its PostgreSQL connections),
so the plan shown is the generic plan every call uses, not a custom plan for literal values.
Each runs as ``EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE`` inside a transaction that is
rolled back, since ANALYZE executes the writes. Run it by hand with
``python bench/explain.py DSN``.
"""

import argparse
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from libraries import EQUEUE
from psycopg import sql
from psycopg.rows import dict_row

BENCH = Path(__file__).resolve().parent
CLAIM_LIMIT = 10
CLAIM_QUEUE = "default"
RATE_MARGIN = 0.05
INSERT_MANY = 100
# Retention's defaults (7 days for completed and cancelled jobs, 30 for failed ones) and its
# batch; PRUNE_DELETING is a retention short enough that the big history's rows are past it.
PRUNE = {"retention": 604800.0, "failed_retention": 2592000.0, "limit": 1000, "now": None}
PRUNE_DELETING = {**PRUNE, "retention": 60.0}
PLAN_CACHE_MODE = "force_generic_plan"
STATEMENT_TIMEOUT = "60s"
LOADER = (
    "import json; from fastapi_equeue.backends._queries import load_queries; "
    "print(json.dumps(load_queries('postgres')))"
)
# What SQLAlchemy's text() binds, and what must be stepped over to find it: string literals
# (E'' ones with backslash escapes), quoted identifiers, comments, dollar quotes and `::` casts.
# The bind pattern is SQLAlchemy's own, so `:name::type` stays unbound here as it does there.
_TOKENS = re.compile(
    r"""
    (?P<skip>
        (?<!\w)[Ee]'(?:[^'\\]|\\.|'')*'
      | '(?:[^']|'')*'
      | "(?:[^"]|"")*"
      | --[^\n]*
      | /\*.*?\*/
      | \$(?P<tag>[A-Za-z_]\w*|)\$.*?\$(?P=tag)\$
      | ::
    )
    | (?<![:\w\\]):(?P<name>\w+)(?!:)
    | (?P<positional>\$\d+)
    """,
    re.VERBOSE | re.DOTALL,
)


def load_queries(python: Path | str) -> dict[str, str]:
    """The PostgreSQL named queries, by the package's loader run in ``python``.

    It runs from ``bench/``, so it reads the installed copy of the package (the one measured).
    """
    out = subprocess.run(
        [str(python), "-c", LOADER],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCH,
        check=False,
    )
    if out.returncode != 0:
        raise ValueError(f"could not load fastapi_equeue's queries:\n{out.stderr[-2000:]}")
    queries: dict[str, str] = json.loads(out.stdout)
    return queries


def bind(statement: str, values: Mapping[str, Any], render: Callable[[Any], str]) -> str:
    """``statement`` with every ``:name`` replaced by ``render(values[name])``, a SQL literal."""

    def replace(match: re.Match[str]) -> str:
        if match["positional"]:
            raise ValueError(
                f"the statement uses {match['positional']}-style placeholders; "
                "bench/explain.py binds only :name ones"
            )
        if match["name"] is None:
            return match[0]
        if match["name"] not in values:
            raise ValueError(f"no bench value for :{match['name']} (add one to bench/explain.py)")
        return render(values[match["name"]])

    return _TOKENS.sub(replace, statement)


def numbered(statement: str) -> tuple[str, list[str]]:
    """``statement`` with its ``:name`` placeholders as ``$1, $2, ...`` (a name used twice keeps
    one number, as the package's ``positional()`` does), and the names in order."""
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match["positional"]:
            raise ValueError(f"the statement already uses {match['positional']}-style placeholders")
        if match["name"] is None:
            return match[0]
        if match["name"] not in names:
            names.append(match["name"])
        return f"${names.index(match['name']) + 1}"

    return _TOKENS.sub(replace, statement), names


def pg_text(value: Any) -> str | None:
    """``value`` in PostgreSQL's text form (None for NULL), sent as an untyped literal so that
    the server reads it with the input function of the type it inferred for the parameter."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            text = pg_text(item)
            if text is None:
                items.append("NULL")
            else:
                items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return "{" + ",".join(items) + "}"
    return str(value)


def uuid7() -> str:
    """A time-ordered id shaped like the package's, so an insert lands where a real one would."""
    value = (time.time_ns() // 1_000_000) << 80 | uuid.uuid4().int & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76
    value = value & ~(0x3 << 62) | 0x2 << 62
    return str(uuid.UUID(int=value))


class Explainer:
    """Runs the package's statements on one connection, each in a rolled-back transaction."""

    def __init__(self, conn: psycopg.Connection[Any], queries: Mapping[str, str]) -> None:
        self.conn = conn
        self.queries = queries
        self.worker_id = str(uuid.uuid4())
        self._prepared = 0

    def literal(self, value: Any) -> str:
        return sql.Literal(value).as_string(self.conn)

    def text(self, name: str, values: Mapping[str, Any]) -> str:
        if name not in self.queries:
            raise ValueError(f"fastapi_equeue has no query named {name!r} any more")
        return bind(self.queries[name], values, self.literal)

    def run(self, name: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self.text(name, values).encode())
            return cur.fetchall()

    def plan(self, name: str, values: Mapping[str, Any]) -> str:
        """The generic plan of ``name``, run with ``values``: PREPARE, then EXPLAIN EXECUTE."""
        if name not in self.queries:
            raise ValueError(f"fastapi_equeue has no query named {name!r} any more")
        text, names = numbered(self.queries[name])
        if missing := [n for n in names if n not in values]:
            raise ValueError(f"no bench value for :{missing[0]} (add one to bench/explain.py)")
        self._prepared += 1
        handle = sql.Identifier(f"bench_explain_{self._prepared}")
        prepare = sql.SQL("PREPARE {} AS ").format(handle).as_bytes(self.conn) + text.encode()
        self.conn.execute(prepare)
        try:
            arguments = sql.SQL(", ").join(
                sql.NULL if (t := pg_text(values[n])) is None else sql.Literal(t) for n in names
            )
            statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE {}{}").format(
                handle, sql.SQL("({})").format(arguments) if names else sql.SQL("")
            )
            return "\n".join(str(row[0]) for row in self.conn.execute(statement))
        finally:
            # PREPARE is not undone by a rollback.
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
                self.conn.execute(sql.SQL("DEALLOCATE {}").format(handle))

    def register(self) -> None:
        """Only a registered worker claims: the worker row, inside the rolled-back transaction."""
        values = {
            "id": self.worker_id,
            "hostname": "explain",
            "pid": 0,
            "queues": None,
            "concurrency": CLAIM_LIMIT,
            "now": None,
        }
        self.conn.execute(self.text("worker_register", values).encode())

    def claim(self) -> str:
        self.register()
        return self.plan("job_claim", self.claim_values())

    def claim_limited(self) -> str:
        """The claim that enforces a queue's settings, on the benchmark's queue (which has
        none, so it locks no queue row: the plan's shape, not a limit's cost)."""
        self.register()
        return self.plan("job_claim_limited", self.claim_values())

    def claim_values(self) -> dict[str, Any]:
        """The claim's parameters as the worker's producer binds them for its queue; ``now``
        NULL takes the database's clock, as the package does without a clock of its own."""
        return {
            "queue": CLAIM_QUEUE,
            "limit": CLAIM_LIMIT,
            "worker_id": self.worker_id,
            "now": None,
            "rate_margin": RATE_MARGIN,
        }

    def complete(self) -> str:
        """The completion of the jobs one claim (run for real, in the same transaction) took."""
        self.register()
        claimed = self.run("job_claim", self.claim_values())
        if not claimed:
            raise ValueError("no queued jobs to claim, so no completion to explain")
        outcomes = [
            {
                "id": str(row["id"]),
                "attempt": row["attempts"],
                "worker_id": self.worker_id,
                "status": "completed",
                "result": "null",
                "error": None,
                "retry_delay": 0.0,
            }
            for row in claimed
        ]
        return self.plan("job_complete_many", {"rows": json.dumps(outcomes), "now": None})

    def insert(self) -> str:
        """A single enqueue."""
        job = {
            "id": uuid7(),
            "job_type": "noop",
            "queue": "default",
            "payload": json.dumps({"i": 0, "t": time.time()}),
            "priority": 0,
            "max_attempts": 3,
            "delay": 0.0,
            "run_at": None,
            "idempotency_key": None,
            "trace_context": None,
            "now": None,
        }
        return self.plan("job_insert", job)

    def insert_many(self) -> str:
        """A bulk enqueue, one array per column as the package binds them."""
        n = INSERT_MANY
        jobs = {
            "ids": [uuid7() for _ in range(n)],
            "job_types": ["noop"] * n,
            "queues": ["default"] * n,
            "payloads": [json.dumps({"i": i, "t": time.time()}) for i in range(n)],
            "priorities": [0] * n,
            "max_attempts": [3] * n,
            "delays": [0.0] * n,
            "run_ats": [None] * n,
            "keys": [None] * n,
            "trace_contexts": [None] * n,
            "now": None,
        }
        return self.plan("job_insert_many", jobs)

    def prune(self) -> str:
        """Retention's delete with its default retentions (7 and 30 days)."""
        return self.plan("job_prune", PRUNE)

    def prune_deleting(self) -> str:
        """The same delete with a 60-second retention: a full batch of old rows to delete."""
        return self.plan("job_prune", PRUNE_DELETING)

    def rolled_back(self, action: Callable[[], str]) -> str:
        """``action``'s plan, run twice (the first warms the cache), its writes undone."""
        timeout = sql.SQL("SET LOCAL statement_timeout = {}").format(STATEMENT_TIMEOUT)
        for _ in range(2):
            with self.conn.transaction(force_rollback=True):
                self.conn.execute(timeout)
                plan = action()
        return plan


def table_facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Rows of ``equeue_jobs`` per status and the size of the table with its indexes."""
    table = sql.Identifier(EQUEUE.tables[0])
    counts = conn.execute(
        sql.SQL("SELECT status, count(*) FROM {} GROUP BY status ORDER BY status").format(table)
    ).fetchall()
    size = conn.execute(
        "SELECT pg_size_pretty(pg_total_relation_size(%s::regclass))", (EQUEUE.tables[0],)
    ).fetchone()
    return {"rows": {str(s): int(n) for s, n in counts}, "size": size[0] if size else "?"}


def hot_plans(dsn: str, queries: Mapping[str, str]) -> dict[str, Any]:
    """The plans of the hot statements on the database at ``dsn``, and what that table held.

    A statement that cannot be explained (renamed, a parameter this module does not know) gets
    an ``error`` instead of a ``plan``; the others are still explained.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(PLAN_CACHE_MODE)))
        explainer = Explainer(conn, queries)
        facts = table_facts(conn)
        plans = []
        steps = (
            ("job_claim", f"claim of up to {CLAIM_LIMIT} jobs", explainer.claim),
            (
                "job_claim_limited",
                f"claim of up to {CLAIM_LIMIT} jobs by the statement for limited queues",
                explainer.claim_limited,
            ),
            ("job_complete_many", "completion of the jobs one claim took", explainer.complete),
            ("job_insert", "insert of 1 job", explainer.insert),
            ("job_insert_many", f"insert of {INSERT_MANY} jobs", explainer.insert_many),
            (
                "job_prune",
                f"retention's delete, retention {PRUNE['retention']:,.0f} s / failed "
                f"{PRUNE['failed_retention']:,.0f} s, up to {PRUNE['limit']:,} per retention",
                explainer.prune,
            ),
            (
                "job_prune",
                f"the same with retention {PRUNE_DELETING['retention']:,.0f} s (rows to delete)",
                explainer.prune_deleting,
            ),
        )
        for name, title, action in steps:
            entry: dict[str, Any] = {"name": name, "title": title}
            try:
                entry["plan"] = explainer.rolled_back(action)
            except (psycopg.Error, ValueError) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            plans.append(entry)
    return {**facts, "plan_cache_mode": PLAN_CACHE_MODE, "plans": plans}


def fill_history(dsn: str, rows: int) -> None:
    """Add ``rows`` completed jobs, made as the big scenario makes its history."""
    assert EQUEUE.history_sql is not None
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(EQUEUE.history_sql, {"lo": 0, "hi": rows, "total": rows})


def main() -> int:
    p = argparse.ArgumentParser(description="EXPLAIN fastapi_equeue's hot statements.")
    p.add_argument("dsn", help="a database with fastapi_equeue's schema and some queued jobs")
    p.add_argument("--python", default=sys.executable, help="an interpreter with the package")
    args = p.parse_args()
    found = hot_plans(args.dsn, load_queries(args.python))
    print(f"equeue_jobs: {found['rows']}, {found['size']}; plan_cache_mode {PLAN_CACHE_MODE}")
    for entry in found["plans"]:
        print(f"\n-- {entry['name']}: {entry['title']}\n{entry.get('plan', entry.get('error'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
