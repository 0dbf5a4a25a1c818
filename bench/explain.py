"""EXPLAIN of fastapi_equeue's hot statements (the claim, the batched completion, the insert) on
a realistic table, for the report's "Query plans" section.

The statements are the package's own, read at run time through its query loader in an
interpreter that has the package installed (the fastapi_equeue venv): nothing here copies its SQL.
Each runs as ``EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)`` inside a transaction that is rolled back,
since ANALYZE executes the writes. Run it by hand with ``python bench/explain.py DSN``.
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
INSERT_MANY = 100
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
        statement = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + self.text(name, values)
        return "\n".join(str(row[0]) for row in self.conn.execute(statement.encode()))

    def register(self) -> None:
        """Only a registered worker claims: the worker row, inside the rolled-back transaction."""
        values = {
            "id": self.worker_id,
            "hostname": "explain",
            "pid": 0,
            "queues": None,
            "concurrency": CLAIM_LIMIT,
        }
        self.conn.execute(self.text("worker_register", values).encode())

    def claim(self) -> str:
        self.register()
        return self.plan("job_claim", self.claim_values())

    def claim_values(self) -> dict[str, Any]:
        return {"limit": CLAIM_LIMIT, "worker_id": self.worker_id}

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
        return self.plan("job_complete_many", {"rows": json.dumps(outcomes)})

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
        }
        return self.plan("job_insert_many", jobs)

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
        explainer = Explainer(conn, queries)
        facts = table_facts(conn)
        plans = []
        steps = (
            ("job_claim", f"claim of up to {CLAIM_LIMIT} jobs", explainer.claim),
            ("job_complete_many", "completion of the jobs one claim took", explainer.complete),
            ("job_insert", "insert of 1 job", explainer.insert),
            ("job_insert_many", f"insert of {INSERT_MANY} jobs", explainer.insert_many),
        )
        for name, title, action in steps:
            entry: dict[str, Any] = {"name": name, "title": title}
            try:
                entry["plan"] = explainer.rolled_back(action)
            except (psycopg.Error, ValueError) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            plans.append(entry)
    return {**facts, "plans": plans}


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
    print(f"equeue_jobs: {found['rows']}, {found['size']}")
    for entry in found["plans"]:
        print(f"\n-- {entry['name']}: {entry['title']}\n{entry.get('plan', entry.get('error'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
