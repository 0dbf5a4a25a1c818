"""The libraries under test: their virtualenvs, worker configs, and the SQL the driver runs on
their tables (counting unfinished jobs, building the big history). Library calls themselves live
in the adapters (``bench/adapters/<key>_adapter.py``), which run inside each library's venv."""

from dataclasses import dataclass

OURS = "fastapi_equeue"

# A UUIDv7-shaped id from a timestamp ``ts`` and a random hex string ``r`` (ids that sort by
# creation time, as both fastapi_equeue and chancy make them, so the history's primary key
# index is built the way a live table's would be).
UUID7_SQL = (
    "(lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' || "
    "substr(r, 1, 3) || '8' || substr(r, 4, 15))::uuid"
)
# Rows lo..hi-1 of the history, finished in the hour(s) before now, a millisecond apart.
HISTORY_FROM = (
    "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS g, "
    "LATERAL (SELECT now() - (%(total)s::bigint - g) * interval '1 ms' AS ts, "
    "replace(gen_random_uuid()::text, '-', '') AS r) AS x"
)


@dataclass(frozen=True)
class Config:
    """One worker configuration of the processing scenario."""

    label: str
    """The row it fills: ``default``, ``c10`` or ``c50``."""
    adapter: str
    """The adapter's ``--config`` that runs it (several labels may share one run)."""
    description: str


@dataclass(frozen=True)
class Library:
    name: str
    key: str
    """Its venv folder (``bench/.venvs/<key>``) and adapter (``adapters/<key>_adapter.py``)."""
    python: str
    requirements: tuple[str, ...]
    distributions: tuple[str, ...]
    """Whose installed versions the report shows."""
    configs: tuple[Config, ...]
    tables: tuple[str, ...]
    """VACUUM ANALYZEd after pre-queueing."""
    unfinished_sql: str
    completed_sql: str
    history_sql: str | None
    """Inserts finished jobs ``lo..hi-1`` for the big scenario, or None."""
    history_note: str


EQUEUE = Library(
    name=OURS,
    key="equeue",
    python="3.11",
    requirements=("uvicorn>=0.30", "httpx>=0.27"),  # plus the repository itself, [postgres]
    distributions=("fastapi-equeue", "asyncpg", "sqlalchemy"),
    configs=(
        Config("default", "default", "concurrency 10 (its default)"),
        Config("c10", "default", "= default"),
        Config("c50", "c50", "concurrency 50"),
    ),
    tables=("equeue_jobs",),
    unfinished_sql=(
        "SELECT count(*) FROM equeue_jobs WHERE status IN ('queued', 'retrying', 'processing')"
    ),
    completed_sql="SELECT count(*) FROM equeue_jobs WHERE status = 'completed'",
    history_sql=(
        "INSERT INTO equeue_jobs (id, job_type, queue, status, payload, attempts, max_attempts, "
        "created_at, scheduled_at, started_at, finished_at, result) "
        f"SELECT {UUID7_SQL}, 'noop', 'default', 'completed', "
        "jsonb_build_object('i', g, 't', 0), 1, 3, ts, ts, ts, ts, 'null'::jsonb " + HISTORY_FROM
    ),
    history_note="completed rows in `equeue_jobs`",
)

PROCRASTINATE = Library(
    name="procrastinate",
    key="procrastinate",
    python="3.11",
    requirements=("procrastinate==3.10.0", "psycopg[binary]"),
    distributions=("procrastinate", "psycopg"),
    configs=(
        Config("default", "default", "concurrency 1 (its default)"),
        Config("c10", "c10", "concurrency 10"),
        Config("c50", "c50", "concurrency 50"),
    ),
    tables=("procrastinate_jobs", "procrastinate_events"),
    unfinished_sql="SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
    completed_sql="SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
    history_sql=(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts) "
        "SELECT 'default', 'noop', jsonb_build_object('i', g, 't', 0), 'succeeded', 1 "
        + HISTORY_FROM
    ),
    history_note=(
        "succeeded rows in `procrastinate_jobs` (its `procrastinate_events` rows for them are "
        "not built: they are not read by the claim)"
    ),
)

PGQUEUER = Library(
    name="pgqueuer",
    key="pgqueuer",
    python="3.11",
    requirements=("pgqueuer==1.6.0", "asyncpg"),
    distributions=("pgqueuer", "asyncpg"),
    configs=(
        Config("default", "default", "batch 10, no cap (its CLI defaults)"),
        Config("c10", "c10", "cap 10, batch 5 (cap must be >= 2 x batch)"),
        Config("c50", "c50", "cap 50, batch 10"),
    ),
    tables=("pgqueuer", "pgqueuer_log"),
    unfinished_sql="SELECT count(*) FROM pgqueuer",
    completed_sql="SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
    history_sql=(
        "INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint, aggregated) "
        "SELECT ts, g, 'successful', 0, 'noop', true " + HISTORY_FROM
    ),
    history_note=(
        "rows in `pgqueuer_log`: pgqueuer deletes finished jobs from its queue table, so its "
        "claim never sees them and stays flat trivially"
    ),
)

OBAN = Library(
    name="oban",
    key="oban",
    python="3.12",
    requirements=("oban==0.7.0", "psycopg[binary]"),
    distributions=("oban", "psycopg"),
    configs=(
        Config("default", "default", "queue limit 10 (its docs' value)"),
        Config("c10", "default", "= default"),
        Config("c50", "c50", "queue limit 50"),
    ),
    tables=("oban_jobs",),
    unfinished_sql=(
        "SELECT count(*) FROM oban_jobs "
        "WHERE state IN ('available', 'scheduled', 'executing', 'retryable')"
    ),
    completed_sql="SELECT count(*) FROM oban_jobs WHERE state = 'completed'",
    history_sql=(
        "INSERT INTO oban_jobs (state, queue, worker, attempt, args, attempted_by, inserted_at, "
        "scheduled_at, attempted_at, completed_at) "
        "SELECT 'completed', 'default', '__main__.Noop', 1, jsonb_build_object('i', g, 't', 0), "
        "ARRAY['bench'], ts AT TIME ZONE 'UTC', ts AT TIME ZONE 'UTC', ts AT TIME ZONE 'UTC', "
        "ts AT TIME ZONE 'UTC' " + HISTORY_FROM
    ),
    history_note="completed rows in `oban_jobs`, younger than its pruner's 1-day max age",
)

CHANCY = Library(
    name="chancy",
    key="chancy",
    python="3.11",
    requirements=("chancy==0.26.0", "psycopg[binary]"),
    distributions=("chancy", "psycopg"),
    configs=(
        Config("default", "default", "AsyncExecutor, concurrency 100 (its default), eager"),
        Config("c10", "c10", "concurrency 10, eager"),
        Config("c50", "c50", "concurrency 50, eager"),
    ),
    tables=("chancy_jobs",),
    unfinished_sql=(
        "SELECT count(*) FROM chancy_jobs WHERE state IN ('pending', 'running', 'retrying')"
    ),
    completed_sql="SELECT count(*) FROM chancy_jobs WHERE state = 'succeeded'",
    history_sql=(
        "INSERT INTO chancy_jobs (id, queue, func, kwargs, state, attempts, max_attempts, "
        "created_at, started_at, completed_at, scheduled_at) "
        f"SELECT {UUID7_SQL}, 'default', '__main__.noop', jsonb_build_object('i', g, 't', 0), "
        "'succeeded', 1, 1, ts, ts, ts, ts " + HISTORY_FROM
    ),
    history_note="succeeded rows in `chancy_jobs`, younger than its pruner's 1-day rule",
)

LIBRARIES: dict[str, Library] = {
    lib.name: lib for lib in (EQUEUE, PROCRASTINATE, PGQUEUER, OBAN, CHANCY)
}
