"""The installed distribution carries what the package reads at run time."""

from importlib import metadata

import pytest

NEEDED = {
    "fastapi_equeue/py.typed",
    "fastapi_equeue/backends/postgres/queries.sql",
    "fastapi_equeue/backends/postgres/migrations/0001_initial.sql",
    "fastapi_equeue/backends/sqlite/queries.sql",
    "fastapi_equeue/backends/sqlite/migrations/0001_initial.sql",
}


def test_wheel_ships_sql_files_and_type_marker() -> None:
    try:
        files = {str(path) for path in metadata.files("fastapi-equeue") or ()}
    except metadata.PackageNotFoundError:
        pytest.skip("fastapi-equeue is not installed")
    if "fastapi_equeue/__init__.py" not in files:
        pytest.skip("an editable install: the files stay in the source tree")
    assert files >= NEEDED


def test_postgres_driver_is_an_extra_and_sqlite_is_built_in() -> None:
    requires = metadata.requires("fastapi-equeue") or []
    assert any(r.startswith("aiosqlite") and "extra" not in r for r in requires)
    assert any(r.startswith("asyncpg") and 'extra == "postgres"' in r for r in requires)
