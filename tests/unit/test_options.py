"""Each enqueue option is defined once (``fastapi_equeue.options``): the keyword of ``enqueue``,
the field of ``EnqueueOptions``, the check, the REST body's field and the row's column are the
same name, and the same check answers every way in."""

import inspect
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from fastapi_equeue import EnqueueOptions, InvalidOption, QueueClient
from fastapi_equeue.api.schemas import JobOptions
from fastapi_equeue.backend import JOB_COLUMNS, JobInsertParams, JobRow
from fastapi_equeue.jobs import Job
from fastapi_equeue.options import OPTIONS


def test_enqueue_keywords_options_and_rest_fields_are_the_same_names() -> None:
    keywords = [
        name
        for name, p in inspect.signature(QueueClient.enqueue).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "session"
    ]

    assert keywords == [f.name for f in fields(EnqueueOptions)]
    assert keywords == list(OPTIONS)
    assert keywords == list(JobOptions.model_fields)


def test_every_option_reaches_the_row() -> None:
    insert = {f.name for f in fields(JobInsertParams)}
    columns = {name for name, _ in JOB_COLUMNS}

    # run_at and delay decide one column (scheduled_at); the others are columns of their own.
    assert set(OPTIONS) <= insert
    assert set(OPTIONS) - {"delay", "run_at"} <= columns


def test_the_public_job_is_a_subset_of_the_columns() -> None:
    assert set(Job.model_fields) <= {f.name for f in fields(JobRow)}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"queue": ""}, "queue"),
        ({"queue": "x" * 201}, "queue"),
        ({"queue": "bad\udfffname"}, "queue"),
        ({"priority": True}, "priority"),
        ({"priority": 2**31}, "priority"),
        ({"delay": -1}, "delay"),
        ({"delay": float("nan")}, "delay"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "a\x00b"}, "idempotency_key"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_option_is_refused_naming_it(values: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        EnqueueOptions.from_mapping(values).checked()

    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_options_are_normalised_by_their_check() -> None:
    options = EnqueueOptions.from_mapping(
        {"delay": timedelta(minutes=1), "run_at": datetime(2030, 1, 1, 2, tzinfo=UTC)}
    ).checked()

    assert options.delay == 60.0
    assert options.delay_seconds == 60.0
    assert options.run_at == datetime(2030, 1, 1, 2, tzinfo=UTC)


def test_json_options_arrive_as_text_where_json_has_no_type() -> None:
    options = EnqueueOptions.from_mapping({"run_at": "2030-01-01T00:00:00+02:00"}, json=True)
    options = options.checked()

    assert options.run_at == datetime(2029, 12, 31, 22, tzinfo=UTC)
    with pytest.raises(InvalidOption) as caught:
        EnqueueOptions.from_mapping({"run_at": 1893456000}, json=True)
    assert caught.value.field == "run_at"
