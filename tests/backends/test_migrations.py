"""Migrations on a database no one has migrated: the schema they create, idempotence, concurrent
migrators, and the ``python -m fastapi_equeue migrate`` command."""

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import Backend
from fastapi_equeue.backends import normalise_url, open_backend

TABLES = {
    "equeue_jobs",
    "equeue_workers",
    "equeue_queues",
    "equeue_dependencies",
    "equeue_schedules",
    "equeue_migrations",
}
INDEXES = {
    "equeue_jobs_queue_claimable_idx",
    "equeue_jobs_queue_processing_idx",
    "equeue_jobs_finished_idx",
    "equeue_jobs_created_idx",
    "equeue_jobs_status_created_idx",
    "equeue_jobs_idempotency_key_idx",
    "equeue_jobs_release_pending_idx",
    "equeue_dependencies_job_idx",
}
MIGRATIONS = [
    "0001_initial",
    "0002_queues",
    "0003_chains_progress",
    "0004_schedules",
    "0005_trace_context",
]
# One subprocess imports FastAPI, SQLAlchemy and pydantic: seconds, not minutes.
CLI_DEADLINE = 60.0

_SCHEMA_QUERIES = {
    "postgresql": (
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name LIKE 'equeue%'",
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename LIKE 'equeue%'",
    ),
    "sqlite": (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'equeue%'",
        "SELECT name, sql FROM sqlite_master "
        "WHERE type = 'index' AND tbl_name LIKE 'equeue%' AND sql IS NOT NULL",
    ),
}


@dataclass(frozen=True)
class Schema:
    """What of ours a database holds."""

    tables: set[str]
    indexes: dict[str, str]  # name -> definition
    applied: list[str]


EMPTY = Schema(tables=set(), indexes={}, applied=[])


async def schema(url: str) -> Schema:
    """The equeue tables and indexes of the database at ``url``, and the migrations recorded."""
    engine = create_async_engine(normalise_url(url))
    tables_sql, indexes_sql = _SCHEMA_QUERIES[engine.dialect.name]
    try:
        async with engine.connect() as conn:
            tables = set((await conn.execute(text(tables_sql))).scalars())
            indexes = {row[0]: row[1] for row in await conn.execute(text(indexes_sql))}
            applied: list[str] = []
            if "equeue_migrations" in tables:
                result = await conn.execute(text("SELECT name FROM equeue_migrations"))
                applied = sorted(result.scalars())
    finally:
        await engine.dispose()
    return Schema(tables=tables, indexes=indexes, applied=applied)


def _primary_keys(schema: Schema) -> set[str]:
    # PostgreSQL lists each table's primary key index; SQLite's have no SQL of their own.
    return {name for name in schema.indexes if name.endswith("_pkey")}


async def open_migrator(url: str) -> Backend:
    backend = open_backend(url)
    await backend.open()
    return backend


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fastapi_equeue",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CLI_DEADLINE):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_fresh_migrate_creates_the_tables_and_indexes(fresh_database_url: str) -> None:
    assert await schema(fresh_database_url) == EMPTY
    backend = await open_migrator(fresh_database_url)
    try:
        applied = await backend.migrate()
    finally:
        await backend.close()

    migrated = await schema(fresh_database_url)

    assert applied == MIGRATIONS
    assert migrated.tables == TABLES
    assert migrated.applied == MIGRATIONS
    assert set(migrated.indexes) == INDEXES | _primary_keys(migrated)
    indexes = migrated.indexes
    # The claim's index only holds claimable rows, and one idempotency key means one job.
    assert "WHERE" in indexes["equeue_jobs_queue_claimable_idx"]
    assert "queued" in indexes["equeue_jobs_queue_claimable_idx"]
    assert "UNIQUE" in indexes["equeue_jobs_idempotency_key_idx"].upper()


async def test_migrate_twice_applies_nothing_the_second_time(fresh_database_url: str) -> None:
    backend = await open_migrator(fresh_database_url)
    try:
        first = await backend.migrate()
        before = await schema(fresh_database_url)
        second = await backend.migrate()
    finally:
        await backend.close()

    assert first == MIGRATIONS
    assert second == []
    assert await schema(fresh_database_url) == before


async def test_concurrent_migrators_all_succeed_and_one_applies(fresh_database_url: str) -> None:
    backends = [await open_migrator(fresh_database_url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(backend.migrate() for backend in backends))
    finally:
        for backend in backends:
            await backend.close()

    assert sorted(results) == [[], [], [], [], MIGRATIONS]
    migrated = await schema(fresh_database_url)
    assert migrated.tables == TABLES
    assert migrated.applied == MIGRATIONS
    assert set(migrated.indexes) >= INDEXES


def test_migration_script_holds_every_statement_and_the_tracking_row(backend_name: str) -> None:
    # Building the script connects to nothing: these databases do not exist.
    url = {
        "sqlite": "sqlite+aiosqlite:///./never-created.db",
        "postgres": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
    }[backend_name]

    script = open_backend(url).migration_script()

    assert "CREATE TABLE IF NOT EXISTS equeue_migrations" in script
    assert "CREATE TABLE equeue_jobs" in script
    assert "CREATE TABLE equeue_workers" in script
    for name in INDEXES - {"equeue_jobs_idempotency_key_idx"}:
        assert f"CREATE INDEX {name}" in script
    assert "CREATE UNIQUE INDEX equeue_jobs_idempotency_key_idx" in script
    assert "INSERT INTO equeue_migrations (name) VALUES ('0001_initial');" in script


class TestCommandLine:
    async def test_migrate_applies_the_schema_and_says_so(self, fresh_database_url: str) -> None:
        code, stdout, stderr = await run_cli("migrate", "--database-url", fresh_database_url)

        assert (code, stderr) == (0, "")
        assert stdout.strip() == "applied: " + ", ".join(MIGRATIONS)
        migrated = await schema(fresh_database_url)
        assert migrated.tables == TABLES
        assert migrated.applied == MIGRATIONS
        assert set(migrated.indexes) >= INDEXES

        code, stdout, _ = await run_cli("migrate", "--database-url", fresh_database_url)

        assert code == 0
        assert stdout.strip() == "the schema is up to date"

    async def test_print_sql_prints_the_schema_without_touching_the_database(
        self, fresh_database_url: str
    ) -> None:
        code, stdout, stderr = await run_cli(
            "migrate", "--database-url", fresh_database_url, "--print-sql"
        )

        assert (code, stderr) == (0, "")
        assert "CREATE TABLE equeue_jobs" in stdout
        assert "CREATE TABLE equeue_workers" in stdout
        assert "equeue_jobs_claimable_idx" in stdout
        database = make_url(fresh_database_url).database
        if fresh_database_url.startswith("sqlite"):
            assert database is not None
            assert not await asyncio.to_thread(Path(database).exists)
        assert await schema(fresh_database_url) == EMPTY

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("mysql+aiomysql://user@localhost/app", "unsupported database 'mysql+aiomysql'"),
            ("not a url", "database_url must be a SQLAlchemy URL"),
            ("sqlite+aiosqlite://", "SQLite needs a file"),
            ("postgresql+asyncpg://user@host:notaport/db", "database_url is not a valid URL"),
        ],
        ids=["unsupported-dialect", "not-a-url", "sqlite-in-memory", "bad-port"],
    )
    async def test_bad_url_exits_2_with_a_clear_message(self, url: str, message: str) -> None:
        code, stdout, stderr = await run_cli("migrate", "--database-url", url)

        assert code == 2
        assert stdout == ""
        assert stderr.startswith("error: ")
        assert message in stderr
        assert "Traceback" not in stderr

    async def test_missing_database_url_is_a_usage_error(self) -> None:
        code, _, stderr = await run_cli("migrate")

        assert code == 2
        assert "--database-url" in stderr
