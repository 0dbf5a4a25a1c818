"""The named-query files and where SQL may live: the checks the house style promises."""

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

import fastapi_equeue
from fastapi_equeue.backend import Backend
from fastapi_equeue.backends._queries import load_migrations, load_queries, positional

PACKAGE = Path(fastapi_equeue.__file__).parent
BACKENDS = PACKAGE / "backends"
DIALECTS = ("postgres", "sqlite")
# LISTEN/NOTIFY needs a ping of its dedicated connection; SQLite has no such connection.
# PostgreSQL claims from a queue with settings in one statement of its own, under a row lock.
POSTGRES_ONLY = {"notifier_probe", "job_claim_limited"}
# SQLite claims from a queue with settings in a transaction of three statements, job_claim
# between these two (its only write lock keeps the three together).
SQLITE_ONLY = {"queue_room", "queue_note_starts"}
SQL_KEYWORDS = ("SELECT ", "UPDATE ", "INSERT INTO", "DELETE FROM")


def package_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if "__pycache__" not in path.parts)


def test_both_dialects_define_the_same_queries() -> None:
    postgres, sqlite = set(load_queries("postgres")), set(load_queries("sqlite"))

    assert postgres - sqlite == POSTGRES_ONLY
    assert sqlite - postgres == SQLITE_ONLY


@pytest.mark.parametrize("dialect", DIALECTS)
def test_queries_appear_in_alphabetical_order(dialect: str) -> None:
    text = resources.files(f"fastapi_equeue.backends.{dialect}").joinpath("queries.sql")
    names = re.findall(r"^-- name: (\w+)\s*$", text.read_text(), flags=re.MULTILINE)

    assert names == sorted(names)
    assert names == list(load_queries(dialect))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_query_has_a_statement_without_a_trailing_semicolon(dialect: str) -> None:
    for name, statement in load_queries(dialect).items():
        assert statement.strip(), name
        assert not statement.rstrip().endswith(";"), name
        assert not statement.lstrip().startswith("-- name:"), name


def test_every_query_is_used_by_the_backends() -> None:
    source = "\n".join(path.read_text() for path in package_files(BACKENDS))
    names = set(load_queries("postgres")) | set(load_queries("sqlite"))

    unused = {name for name in names if f'"{name}"' not in source and f"'{name}'" not in source}

    assert unused == set()


def test_every_storage_method_of_the_backend_protocol_has_its_query() -> None:
    lifecycle = {"open", "close", "migrate", "migration_script", "on_dependents_moved"}
    methods = {
        name
        for name, value in vars(Backend).items()
        if callable(value) and not name.startswith("_") and name not in lifecycle
    }

    for dialect in DIALECTS:
        assert methods - set(load_queries(dialect)) == set(), dialect


def test_positional_numbers_each_name_once_and_leaves_casts_literals_and_comments_alone() -> None:
    sql, names = positional(
        "SELECT ':x', :a::int -- :c\nFROM t WHERE b = :b AND c = 'it'':s' AND d = CAST(:a AS text)"
    )

    assert sql == (
        "SELECT ':x', $1::int -- :c\nFROM t WHERE b = $2 AND c = 'it'':s' AND d = CAST($1 AS text)"
    )
    assert names == ("a", "b")


def test_every_postgres_statement_binds_exactly_the_names_it_uses() -> None:
    for name, statement in load_queries("postgres").items():
        sql, names = positional(statement)
        code = re.sub(r"--[^\n]*", "", sql)  # comments may name parameters
        assert re.search(r"(?<![:\w]):[a-z_]", code) is None, name
        assert [f"${i}" in sql for i in range(1, len(names) + 1)] == [True] * len(names), name
        assert f"${len(names) + 1}" not in sql, name


def test_both_dialects_have_the_same_migrations() -> None:
    postgres = [name for name, _ in load_migrations("postgres")]
    sqlite = [name for name, _ in load_migrations("sqlite")]

    assert postgres == sqlite
    assert postgres[:2] == ["0001_initial", "0002_queues"]
    assert all(statements for _, statements in load_migrations("postgres"))


def test_no_sql_outside_the_backends() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in package_files(PACKAGE)
        if BACKENDS not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if any(keyword in line for keyword in SQL_KEYWORDS)
    ]

    assert offenders == []


def test_the_sql_check_sees_the_package() -> None:
    # Guards the test above against passing because it looked at nothing.
    outside = [path for path in package_files(PACKAGE) if BACKENDS not in path.parents]

    assert PACKAGE / "client.py" in outside
    assert PACKAGE / "runtime" / "completer.py" in outside
    assert PACKAGE / "backends" / "_sql.py" not in outside


@pytest.mark.parametrize("module", ["pickle", "marshal", "shelve", "dill", "cloudpickle"])
def test_no_module_imports_an_unsafe_deserialiser(module: str) -> None:
    importers = []
    for path in package_files(PACKAGE):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            else:
                continue
            if any(name == module or name.startswith(f"{module}.") for name in imported):
                importers.append(str(path.relative_to(PACKAGE)))

    assert importers == []
