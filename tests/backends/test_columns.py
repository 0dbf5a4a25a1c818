"""A job's columns are defined once, as the fields of ``JobRow``: the table holds exactly those,
on both backends, and a row read back decodes into them."""

from dataclasses import fields

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import JOB_COLUMNS, Backend, JobRow
from fastapi_equeue.backends import normalise_url
from tests.backends.factory import insert_one

_COLUMNS = {
    "postgresql": (
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'equeue_jobs'"
    ),
    "sqlite": "SELECT name FROM pragma_table_info('equeue_jobs')",
}


async def test_the_table_holds_exactly_the_fields_of_a_job_row(
    backend: Backend, database_url: str
) -> None:
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.connect() as conn:
            columns = set((await conn.execute(text(_COLUMNS[engine.dialect.name]))).scalars())
    finally:
        await engine.dispose()

    assert columns == {f.name for f in fields(JobRow)}
    assert [name for name, _ in JOB_COLUMNS] == [f.name for f in fields(JobRow)]


async def test_a_new_row_holds_a_new_jobs_defaults(backend: Backend) -> None:
    inserted = await insert_one(backend)

    stored = await backend.job_get(inserted.id)

    assert stored == inserted
