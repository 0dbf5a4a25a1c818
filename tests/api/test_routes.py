"""The REST status-code table of the contract, route by route, on both backends."""

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from fastapi_equeue import EQueue, Job, JobStatus
from fastapi_equeue.testing import drain, eventually
from tests.api.conftest import (
    UNKNOWN_ID,
    OutageDatabase,
    ServeApi,
    Served,
    add_tasks,
    http_client,
    mount,
)
from tests.conftest import pg_dsn

# Ids that are no job's: unknown, malformed, very long, odd unicode, NUL, path tricks (as sent,
# percent-encoded where the path needs it).
NOT_IDS = [
    UNKNOWN_ID,
    "not-a-uuid",
    "x" * 5000,
    "01a20f0e-dcf2-73b7-97b7-c956684f8f5",
    UNKNOWN_ID + "0",
    "%F0%9F%92%A9",
    "%00",
    "..%2F",
    "%2e%2e",
    "%27%20OR%201%3D1%20--",
    "%FF%FE",
]
JOB_FIELDS = set(Job.model_fields)


async def _submit(
    http: httpx.AsyncClient, job_type: str = "add", payload: object = None, **options: object
) -> httpx.Response:
    body: dict[str, object] = {"job_type": job_type, **options}
    body["payload"] = {"a": 1, "b": 2} if payload is None and job_type == "add" else payload
    return await http.post("/jobs", json=body)


async def _job_id(http: httpx.AsyncClient, job_type: str = "add", **options: object) -> str:
    response = await _submit(http, job_type, **options)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _stored(queue: EQueue) -> list[Job]:
    return (await queue.client.list(limit=500)).items


async def _finished(api: Served) -> dict[str, str]:
    """One job in each final status, run on an enqueue-only queue: status -> id."""
    completed = await _job_id(api.http)
    failed = await _job_id(api.http, "fail", payload={})
    await drain(api.queue)
    cancelled = await _job_id(api.http)
    assert (await api.http.post(f"/jobs/{cancelled}/cancel")).status_code == 200
    return {"completed": completed, "failed": failed, "cancelled": cancelled}


def _locs(response: httpx.Response) -> list[list[object]]:
    return [error["loc"] for error in response.json()["detail"]]


# -- POST /jobs --------------------------------------------------------------------------------


async def test_submit_is_201_with_location(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        response = await _submit(api.http)
        body = response.json()
        stored = await api.queue.client.get(body["id"])
        fetched = await api.http.get(response.headers["location"])

    assert response.status_code == 201
    assert response.headers["location"] == f"/jobs/{body['id']}"
    assert set(body) == JOB_FIELDS
    assert body["job_type"] == "add"
    assert body["status"] == "queued"
    assert body["payload"] == {"a": 1, "b": 2}
    assert (body["queue"], body["priority"], body["attempts"], body["max_attempts"]) == (
        "default",
        0,
        0,
        3,
    )
    assert stored is not None
    assert stored.model_dump(mode="json") == body
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_submit_with_every_option_stores_them(serve_api: ServeApi) -> None:
    run_at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    async with serve_api(concurrency=0) as api:
        delayed = await _submit(
            api.http, queue="mail", priority=7, delay=3600, max_attempts=9, idempotency_key="k1"
        )
        scheduled = await _submit(api.http, run_at=run_at.isoformat())
        jobs = {job.id: job for job in await _stored(api.queue)}

    assert delayed.status_code == 201
    assert scheduled.status_code == 201
    first = jobs[delayed.json()["id"]]
    assert (first.queue, first.priority, first.max_attempts) == ("mail", 7, 9)
    assert first.scheduled_at - first.created_at >= timedelta(seconds=3599)
    assert jobs[scheduled.json()["id"]].scheduled_at == run_at


async def test_submit_idempotent_repeat_is_200_with_same_job(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        first = await _submit(api.http, idempotency_key="once")
        again = await _submit(api.http, idempotency_key="once", payload={"a": 5, "b": 6})
        stored = await _stored(api.queue)

    assert first.status_code == 201
    assert again.status_code == 200
    assert "location" not in again.headers
    assert again.json() == first.json()
    assert [job.id for job in stored] == [first.json()["id"]]
    assert stored[0].payload == {"a": 1, "b": 2}


async def test_submit_unknown_job_type_is_422_and_stores_nothing(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        response = await _submit(api.http, "no_such_task", payload={})
        stored = await _stored(api.queue)

    assert response.status_code == 422
    assert _locs(response) == [["body", "job_type"]]
    assert "no_such_task" in response.json()["detail"][0]["msg"]
    assert stored == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"a": "x", "b": 2}, "a"),
        ({"a": 1}, "b"),
        ({"a": 1, "b": 2, "c": 3}, "c"),
        ({"a": [1], "b": 2}, "a"),
        ({"a": 1, "b": 2.5}, "b"),
    ],
    ids=["wrong-type", "missing", "unknown-key", "list-for-int", "fraction-for-int"],
)
async def test_submit_invalid_payload_is_422_naming_the_field(
    serve_api: ServeApi, payload: dict[str, object], field: str
) -> None:
    async with serve_api(concurrency=0) as api:
        response = await _submit(api.http, payload=payload)
        stored = await _stored(api.queue)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "payload", field]
    assert all({"loc", "msg", "type"} <= set(error) for error in detail)
    assert stored == []


@pytest.mark.parametrize(
    "payload",
    [[1, 2], "text", 5, True],
    ids=["list", "string", "number", "bool"],
)
async def test_submit_payload_that_is_not_an_object_is_422(
    serve_api: ServeApi, payload: object
) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.post("/jobs", json={"job_type": "echo", "payload": payload})
        stored = await _stored(api.queue)

    assert response.status_code == 422
    assert _locs(response)[0][:2] == ["body", "payload"]
    assert stored == []


async def test_submit_payload_too_large_is_413_and_stores_nothing(serve_api: ServeApi) -> None:
    # {"text":"..."} is 11 bytes around the text: 989 characters make exactly 1,000 bytes.
    async with serve_api(concurrency=0, max_payload_bytes=1000) as api:
        at_limit = await _submit(api.http, "echo", payload={"text": "x" * 989})
        over = await _submit(api.http, "echo", payload={"text": "x" * 990})
        stored = await _stored(api.queue)

    assert at_limit.status_code == 201
    assert over.status_code == 413
    assert isinstance(over.json()["detail"], str)
    assert [job.id for job in stored] == [at_limit.json()["id"]]


async def test_submit_payload_size_counts_utf8_bytes_not_characters(serve_api: ServeApi) -> None:
    # 495 "é" are 495 characters but 990 bytes: 1,001 bytes of JSON.
    async with serve_api(concurrency=0, max_payload_bytes=1000) as api:
        response = await _submit(api.http, "echo", payload={"text": "é" * 495})
        stored = await _stored(api.queue)

    assert response.status_code == 413
    assert stored == []


async def test_submit_body_declaring_a_length_over_the_limit_is_413(serve_api: ServeApi) -> None:
    body = json.dumps({"job_type": "echo", "payload": {"text": "x" * 200_000}}).encode()
    async with serve_api(concurrency=0, max_payload_bytes=1000) as api:
        response = await api.http.post(
            "/jobs", content=body, headers={"content-type": "application/json"}
        )
        stored = await _stored(api.queue)

    assert response.status_code == 413
    assert stored == []


async def test_submit_chunked_body_over_the_limit_is_413_before_it_is_read(
    serve_api: ServeApi,
) -> None:
    chunk_size = 64 * 1024
    total = 50 * 1024 * 1024
    sent = 0

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        head = b'{"job_type": "echo", "payload": {"text": "'
        sent += len(head)
        yield head
        while sent < total:
            sent += chunk_size
            yield b"x" * chunk_size

    async with serve_api(concurrency=0, max_payload_bytes=1000) as api:
        response = await api.http.post(
            "/jobs", content=fifty_megabytes(), headers={"content-type": "application/json"}
        )
        stored = await _stored(api.queue)

    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    # The limit is the payload limit plus room for the options: far below 50 MB.
    assert sent <= 1000 + 16 * 1024 + chunk_size + 64
    assert stored == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"nul",
        b'{"job_type": "add", "payload": {"a": 1, "b": 2}',
        b"[1, 2]",
        b'"add"',
        b"42",
        b"null",
        b"\xff\xfe\x00",
        b"[" * 100_000,
        b'{"payload": {"a": 1, "b": 2}}',
        b'{"job_type": 5, "payload": {"a": 1, "b": 2}}',
        b'{"job_type": null, "payload": {"a": 1, "b": 2}}',
    ],
    ids=[
        "empty",
        "open-brace",
        "truncated-literal",
        "unclosed-object",
        "array",
        "string",
        "number",
        "null",
        "not-utf8",
        "deeply-nested",
        "no-job-type",
        "job-type-number",
        "job-type-null",
    ],
)
async def test_submit_bad_json_or_non_object_body_is_422(serve_api: ServeApi, body: bytes) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.post(
            "/jobs", content=body, headers={"content-type": "application/json"}
        )
        stored = await _stored(api.queue)

    assert response.status_code == 422, response.text
    assert _locs(response)[0][0] == "body"
    assert stored == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": "x"}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"priority": 10**30}, "priority"),
        ({"delay": -1}, "delay"),
        ({"delay": "soon"}, "delay"),
        ({"delay": 1e300}, "delay"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"priority": True}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"delay": False}, "delay"),
        ({"max_attempts": 10_000}, "max_attempts"),
        ({"queue": ""}, "queue"),
        ({"queue": 5}, "queue"),
        ({"queue": "q" * 201}, "queue"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": ["k"]}, "idempotency_key"),
        ({"colour": "red"}, "colour"),
    ],
    ids=lambda value: json.dumps(value)[:40] if isinstance(value, dict) else str(value),
)
async def test_submit_wrong_option_is_422_naming_it_and_stores_nothing(
    serve_api: ServeApi, options: dict[str, object], field: str
) -> None:
    async with serve_api(concurrency=0) as api:
        response = await _submit(api.http, "add", None, **options)
        stored = await _stored(api.queue)

    assert response.status_code == 422, response.text
    assert _locs(response)[0] == ["body", field]
    assert stored == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"job_type": "add", "payload": {"a": 1, "b": 2}, "delay": NaN}',
        b'{"job_type": "add", "payload": {"a": 1, "b": 2}, "delay": Infinity}',
        b'{"job_type": "add", "payload": {"a": NaN, "b": 2}}',
        b'{"job_type": "echo", "payload": {"text": NaN}}',
    ],
    ids=["delay-nan", "delay-infinity", "payload-nan-int", "payload-nan-str"],
)
async def test_submit_non_finite_numbers_are_422(serve_api: ServeApi, body: bytes) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.post(
            "/jobs", content=body, headers={"content-type": "application/json"}
        )
        stored = await _stored(api.queue)

    assert response.status_code == 422, response.text
    assert stored == []


# -- GET /jobs/{id} and the 404s of every route taking an id -----------------------------------


async def test_get_job_is_200_with_the_job(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        job_id = await _job_id(api.http)
        await drain(api.queue)
        response = await api.http.get(f"/jobs/{job_id}")
        stored = await api.queue.client.get(job_id)

    assert response.status_code == 200
    assert stored is not None
    assert response.json() == stored.model_dump(mode="json")
    assert response.json()["status"] == "completed"
    assert response.json()["result"] == 3


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/jobs/{}"),
        ("GET", "/jobs/{}/result"),
        ("GET", "/jobs/{}/result?wait=0.1"),
        ("POST", "/jobs/{}/cancel"),
        ("POST", "/jobs/{}/retry"),
    ],
    ids=["get", "result", "result-wait", "cancel", "retry"],
)
async def test_unknown_or_malformed_id_is_404_on_every_route_taking_an_id(
    serve_api: ServeApi, method: str, template: str
) -> None:
    async with serve_api(concurrency=0) as api:
        await _job_id(api.http)
        # Followed: Starlette redirects a path that decodes to a trailing slash ("..%2F").
        statuses = {
            job_id[:40]: (
                await api.http.request(method, template.format(job_id), follow_redirects=True)
            ).status_code
            for job_id in NOT_IDS
        }
        stored = await _stored(api.queue)

    assert statuses == {job_id[:40]: 404 for job_id in NOT_IDS}
    assert [job.status for job in stored] == [JobStatus.QUEUED]


async def test_a_404_body_is_a_detail_string(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.get(f"/jobs/{UNKNOWN_ID}")

    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)


# -- GET /jobs/{id}/result -----------------------------------------------------------------------


async def test_result_of_a_completed_job_is_200_with_the_result(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        job_id = await _job_id(api.http)
        await drain(api.queue)
        response = await api.http.get(f"/jobs/{job_id}/result")

    assert response.status_code == 200
    assert response.json() == {"id": job_id, "status": "completed", "result": 3}


async def test_result_while_queued_failed_or_cancelled_is_409_with_the_status(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as api:
        ids = await _finished(api)
        ids["queued"] = await _job_id(api.http)
        del ids["completed"]
        responses = {status: await api.http.get(f"/jobs/{i}/result") for status, i in ids.items()}

    assert {status: r.status_code for status, r in responses.items()} == dict.fromkeys(ids, 409)
    for status, response in responses.items():
        assert set(response.json()) == {"detail", "status"}
        assert response.json()["status"] == status
        assert isinstance(response.json()["detail"], str)


async def test_result_while_processing_is_409_processing(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        job_id = await _job_id(api.http, "hold", payload={})
        await asyncio.wait_for(api.gate.started.wait(), 10)
        response = await api.http.get(f"/jobs/{job_id}/result")
        api.gate.release.set()
        done = await api.queue.client.wait(job_id, timeout=10)

    assert response.status_code == 409
    assert response.json()["status"] == "processing"
    assert done.status is JobStatus.COMPLETED


async def test_result_wait_returns_once_the_job_completes(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        job_id = await _job_id(api.http, "slow_add", payload={"a": 2, "b": 3, "seconds": 0.3})
        started = time.monotonic()
        response = await api.http.get(f"/jobs/{job_id}/result", params={"wait": 10})
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json() == {"id": job_id, "status": "completed", "result": 5}
    assert elapsed < 5  # well before the 10 s deadline: woken by the completion


@pytest.mark.postgres_only
async def test_result_wait_is_woken_by_the_completion_notify(serve_api: ServeApi) -> None:
    # Polls 30 s apart: only the completion's NOTIFY can end the wait in time.
    async with serve_api(poll_interval=30) as api:
        job_id = await _job_id(api.http, "slow_add", payload={"a": 2, "b": 3, "seconds": 0.3})
        started = time.monotonic()
        response = await api.http.get(f"/jobs/{job_id}/result", params={"wait": 10})
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["result"] == 5
    assert elapsed < 5


async def test_result_wait_that_runs_out_is_409_with_the_status(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        job_id = await _job_id(api.http)
        started = time.monotonic()
        response = await api.http.get(f"/jobs/{job_id}/result", params={"wait": 0.3})
        elapsed = time.monotonic() - started

    assert response.status_code == 409
    assert response.json()["status"] == "queued"
    assert elapsed >= 0.25  # it did wait


async def test_result_wait_for_a_job_that_fails_is_409_failed(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        job_id = await _job_id(api.http, "fail", payload={})
        response = await api.http.get(f"/jobs/{job_id}/result", params={"wait": 10})

    assert response.status_code == 409
    assert response.json()["status"] == "failed"


@pytest.mark.parametrize(
    "wait", ["-1", "-0.5", "60.5", "61", "nan", "inf", "-inf", "abc", "1e400", "0x10"]
)
async def test_result_wait_outside_0_to_60_or_not_a_number_is_422(
    serve_api: ServeApi, wait: str
) -> None:
    async with serve_api(concurrency=0) as api:
        job_id = await _job_id(api.http)
        response = await api.http.get(f"/jobs/{job_id}/result", params={"wait": wait})

    assert response.status_code == 422
    assert _locs(response) == [["query", "wait"]]


async def test_result_wait_bounds_0_and_60_are_accepted(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        job_id = await _job_id(api.http)
        await drain(api.queue)
        responses = [
            await api.http.get(f"/jobs/{job_id}/result", params={"wait": w}) for w in ("0", "60")
        ]

    assert [r.status_code for r in responses] == [200, 200]


# -- POST /jobs/{id}/cancel ----------------------------------------------------------------------


async def test_cancel_queued_is_200_cancelled(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        job_id = await _job_id(api.http)
        response = await api.http.post(f"/jobs/{job_id}/cancel")
        await drain(api.queue)
        stored = await api.queue.client.get(job_id)

    assert response.status_code == 200
    assert response.json()["id"] == job_id
    assert response.json()["status"] == "cancelled"
    assert stored is not None
    assert stored.status is JobStatus.CANCELLED
    assert stored.attempts == 0


async def test_cancel_retrying_is_200_cancelled(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        job_id = await _job_id(api.http, "flaky", payload={})
        await drain(api.queue)
        before = await api.queue.client.get(job_id)
        response = await api.http.post(f"/jobs/{job_id}/cancel")
        stored = await api.queue.client.get(job_id)

    assert before is not None
    assert before.status is JobStatus.RETRYING
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert stored is not None
    assert stored.status is JobStatus.CANCELLED


async def test_cancel_running_is_200_and_the_job_ends_cancelled(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        job_id = await _job_id(api.http, "hold", payload={})
        await asyncio.wait_for(api.gate.started.wait(), 10)
        response = await api.http.post(f"/jobs/{job_id}/cancel")
        done = await api.queue.client.wait(job_id, timeout=10)
        fetched = await api.http.get(f"/jobs/{job_id}")

    assert response.status_code == 200
    assert response.json()["id"] == job_id
    assert response.json()["status"] in {"processing", "cancelled"}
    assert done.status is JobStatus.CANCELLED
    assert done.result is None
    assert api.gate.interrupted.is_set()
    assert fetched.json()["status"] == "cancelled"


async def test_cancel_finished_is_409_with_the_status(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        ids = await _finished(api)
        responses = {s: await api.http.post(f"/jobs/{i}/cancel") for s, i in ids.items()}
        stored = {job.id: job.status.value for job in await _stored(api.queue)}

    assert {s: r.status_code for s, r in responses.items()} == dict.fromkeys(ids, 409)
    assert {s: r.json()["status"] for s, r in responses.items()} == {s: s for s in ids}
    assert stored == {i: s for s, i in ids.items()}


# -- POST /jobs/{id}/retry -----------------------------------------------------------------------


async def test_retry_failed_or_cancelled_is_200_queued_with_attempts_reset(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as api:
        ids = await _finished(api)
        failed = await api.http.post(f"/jobs/{ids['failed']}/retry")
        cancelled = await api.http.post(f"/jobs/{ids['cancelled']}/retry")
        stored = await api.queue.client.get(ids["failed"])

    for response in (failed, cancelled):
        assert response.status_code == 200
        assert response.json()["status"] == "queued"
        assert response.json()["attempts"] == 0
    assert failed.json()["id"] == ids["failed"]
    assert stored is not None
    assert stored.status is JobStatus.QUEUED
    assert stored.attempts == 0
    assert [error.error for error in stored.errors] == ["RuntimeError: boom"]


async def test_retry_queued_processing_or_completed_is_409(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        completed = await _job_id(api.http)
        await api.queue.client.wait(completed, timeout=10)
        queued = await _job_id(api.http, delay=3600)
        processing = await _job_id(api.http, "hold", payload={})
        await asyncio.wait_for(api.gate.started.wait(), 10)
        ids = {"completed": completed, "queued": queued, "processing": processing}
        responses = {s: await api.http.post(f"/jobs/{i}/retry") for s, i in ids.items()}
        api.gate.release.set()

    assert {s: r.status_code for s, r in responses.items()} == dict.fromkeys(ids, 409)
    assert {s: r.json()["status"] for s, r in responses.items()} == {s: s for s in ids}


# -- GET /jobs -----------------------------------------------------------------------------------


async def test_list_is_200_newest_first(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        ids = [await _job_id(api.http) for _ in range(3)]
        response = await api.http.get("/jobs")

    assert response.status_code == 200
    assert set(response.json()) == {"items", "next_cursor"}
    assert [item["id"] for item in response.json()["items"]] == ids[::-1]
    assert response.json()["next_cursor"] is None
    assert all(set(item) == JOB_FIELDS for item in response.json()["items"])


async def test_list_filters_by_status_job_type_and_queue(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        ids = await _finished(api)
        mail = await _job_id(api.http, queue="mail")
        echo = await _job_id(api.http, "echo", payload={"text": "hi"})

        async def listed(**params: str) -> list[str]:
            response = await api.http.get("/jobs", params=params)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        by_status = {s: await listed(status=s) for s in [*ids, "queued", "retrying"]}
        by_type = await listed(job_type="echo")
        by_queue = await listed(queue="mail")
        combined = await listed(status="queued", job_type="add", queue="default")
        nothing = await listed(job_type="nope")

    assert by_status == {
        "completed": [ids["completed"]],
        "failed": [ids["failed"]],
        "cancelled": [ids["cancelled"]],
        "queued": [echo, mail],
        "retrying": [],
    }
    assert by_type == [echo]
    assert by_queue == [mail]
    assert combined == []
    assert nothing == []


@pytest.mark.parametrize("limit", ["0", "501", "-1", "x", str(10**30), "1.5", ""])
async def test_list_limit_outside_1_to_500_is_422(serve_api: ServeApi, limit: str) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.get("/jobs", params={"limit": limit})

    assert response.status_code == 422
    assert _locs(response) == [["query", "limit"]]


async def test_list_limit_bounds_1_and_500_are_accepted(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        ids = [await _job_id(api.http) for _ in range(2)]
        one = await api.http.get("/jobs", params={"limit": 1})
        most = await api.http.get("/jobs", params={"limit": 500})

    assert one.status_code == 200
    assert [item["id"] for item in one.json()["items"]] == [ids[1]]
    assert one.json()["next_cursor"] is not None
    assert most.status_code == 200
    assert len(most.json()["items"]) == 2


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"status": "bogus"}, ["query", "status"]),
        ({"status": "QUEUED"}, ["query", "status"]),
        ({"cursor": "not-a-cursor!"}, ["query", "cursor"]),
        ({"cursor": _b64(b"\x00\xffjunk")}, ["query", "cursor"]),
        ({"cursor": _b64(b'["yesterday", "x"]')}, ["query", "cursor"]),
        ({"cursor": _b64(json.dumps(["2030-01-01T00:00:00", UNKNOWN_ID]).encode())}, None),
        ({"cursor": _b64(json.dumps({"at": 1}).encode())}, ["query", "cursor"]),
        ({"cursor": "A" * 600}, ["query", "cursor"]),
        ({"job_type": ""}, ["query", "job_type"]),
        ({"queue": ""}, ["query", "queue"]),
        ({"colour": "red"}, ["query", "colour"]),
        ({"Status": "queued"}, ["query", "Status"]),
    ],
    ids=[
        "status-unknown",
        "status-uppercase",
        "cursor-random",
        "cursor-base64-junk",
        "cursor-bad-date",
        "cursor-naive-date",
        "cursor-object",
        "cursor-too-long",
        "job-type-empty",
        "queue-empty",
        "unknown-parameter",
        "parameter-wrong-case",
    ],
)
async def test_list_bad_filter_cursor_or_unknown_parameter_is_422(
    serve_api: ServeApi, params: dict[str, str], loc: list[str] | None
) -> None:
    async with serve_api(concurrency=0) as api:
        await _job_id(api.http)
        response = await api.http.get("/jobs", params=params)

    assert response.status_code == 422, response.text
    if loc is not None:
        assert _locs(response) == [loc]


async def _seed(queue: EQueue, count: int) -> list[str]:
    """``count`` jobs, half written in one round trip (so they share a creation time on
    PostgreSQL), half one by one; their ids newest first, as the API lists them."""
    batch = await queue.client.enqueue_many(
        [{"job_type": "add", "payload": {"a": n, "b": 0}} for n in range(count // 2)]
    )
    singles = [
        await queue.client.enqueue("add", {"a": n, "b": 1}) for n in range(count - len(batch))
    ]
    assert len({*(job.id for job in batch), *(job.id for job in singles)}) == count
    return [job.id for job in (await queue.client.list(limit=500)).items]


async def _pages(
    http: httpx.AsyncClient, limit: int, between: Callable[[], Awaitable[None]] | None = None
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await http.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        pages.append([item["id"] for item in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if cursor is None or len(pages) > 100:
            return pages
        if between is not None:
            await between()


async def test_list_pages_of_7_visit_each_of_50_jobs_exactly_once(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        newest_first = await _seed(api.queue, 50)
        pages = await _pages(api.http, 7)

    assert [len(page) for page in pages] == [7] * 7 + [1]
    assert [job_id for page in pages for job_id in page] == newest_first


async def test_list_paging_while_jobs_are_inserted_sees_each_existing_job_once(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as api:
        existing = await _seed(api.queue, 50)
        stop = asyncio.Event()
        inserted: list[str] = []

        async def keep_inserting() -> None:
            while not stop.is_set():
                inserted.append((await api.queue.client.enqueue("add", {"a": 0, "b": 0})).id)

        async def three_more() -> None:
            jobs = [await api.queue.client.enqueue("echo", {"text": "new"}) for _ in range(3)]
            inserted.extend(job.id for job in jobs)

        inserter = asyncio.create_task(keep_inserting())
        try:
            pages = await _pages(api.http, 7, three_more)
        finally:
            stop.set()
            await inserter

    seen = [job_id for page in pages for job_id in page]
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert [job_id for job_id in seen if job_id in set(existing)] == existing
    assert len(inserted) >= 3 * (len(pages) - 1)


# -- GET /jobs/stats -----------------------------------------------------------------------------


async def test_stats_of_an_empty_queue(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.get("/jobs/stats")

    assert response.status_code == 200
    assert response.json() == {
        "counts": {status.value: 0 for status in JobStatus},
        "queues": {},
        "oldest_queued_age": None,
        "completed_last_minute": 0,
        "failed_last_minute": 0,
    }


async def test_stats_count_every_status_per_queue_with_recent_outcomes(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as api:
        for _ in range(2):
            await _job_id(api.http)
        await _job_id(api.http, "fail", payload={})
        await _job_id(api.http, "flaky", payload={})
        await drain(api.queue)
        cancelled = await _job_id(api.http)
        await api.http.post(f"/jobs/{cancelled}/cancel")
        await _job_id(api.http, queue="mail")
        await _job_id(api.http, queue="mail", delay=3600)
        response = await api.http.get("/jobs/stats")

    assert response.status_code == 200
    stats = response.json()
    assert stats["counts"] == {
        "queued": 2,
        "processing": 0,
        "retrying": 1,
        "completed": 2,
        "failed": 1,
        "cancelled": 1,
    }
    assert stats["queues"] == {
        "default": {"completed": 2, "failed": 1, "retrying": 1, "cancelled": 1},
        "mail": {"queued": 2},
    }
    # Only the mail job that is due counts, and it was queued just now.
    assert 0 <= stats["oldest_queued_age"] < 30
    assert stats["completed_last_minute"] == 2
    assert stats["failed_last_minute"] == 1


async def test_stats_count_a_running_job_as_processing(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        await _job_id(api.http, "hold", payload={})
        await asyncio.wait_for(api.gate.started.wait(), 10)
        response = await api.http.get("/jobs/stats")
        api.gate.release.set()

    assert response.json()["counts"]["processing"] == 1
    assert response.json()["queues"] == {"default": {"processing": 1}}
    assert response.json()["oldest_queued_age"] is None


# -- mounting ------------------------------------------------------------------------------------


async def test_under_a_prefix_the_location_includes_it(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0, prefix="/api") as api:
        response = await _submit_to(api.http, "/api/jobs")
        fetched = await api.http.get(response.headers["location"])
        unprefixed = await api.http.get(f"/jobs/{response.json()['id']}")

    assert response.status_code == 201
    assert response.headers["location"] == f"/api/jobs/{response.json()['id']}"
    assert fetched.status_code == 200
    assert fetched.json()["id"] == response.json()["id"]
    assert unprefixed.status_code == 404


async def test_behind_a_root_path_the_location_includes_it(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    add_tasks(queue)
    app = mount("/api")
    transport = httpx.ASGITransport(app=app, root_path="/svc")
    async with (
        queue.lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        response = await _submit_to(http, "/svc/api/jobs")
        fetched = await http.get(response.headers["location"])

    assert response.status_code == 201
    assert response.headers["location"] == f"/svc/api/jobs/{response.json()['id']}"
    assert fetched.status_code == 200


async def _submit_to(http: httpx.AsyncClient, path: str) -> httpx.Response:
    return await http.post(path, json={"job_type": "add", "payload": {"a": 1, "b": 2}})


# -- a database that is down ---------------------------------------------------------------------

EVERY_ROUTE = [
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/stats"),
    ("GET", "/jobs/{id}"),
    ("GET", "/jobs/{id}/result"),
    ("GET", "/jobs/{id}/result?wait=1"),
    ("POST", "/jobs/{id}/cancel"),
    ("POST", "/jobs/{id}/retry"),
]


async def _every_route(http: httpx.AsyncClient, job_id: str) -> dict[str, httpx.Response]:
    responses = {}
    for method, template in EVERY_ROUTE:
        body = {"job_type": "add", "payload": {"a": 1, "b": 2}} if template == "/jobs" else None
        url = template.replace("{id}", job_id)
        responses[f"{method} {template}"] = await http.request(
            method, url, json=body if method == "POST" else None
        )
    return responses


async def test_a_database_that_is_down_answers_503_not_500(
    outage_database: OutageDatabase,
) -> None:
    queue = EQueue(outage_database.url, concurrency=0, poll_interval=0.05)
    add_tasks(queue)
    app = mount()
    async with queue.lifespan(app), http_client(app, raise_app_exceptions=False) as http:
        job_id = await _job_id(http)
        await outage_database.take_down(queue)
        responses = await _every_route(http, job_id)

    statuses = {route: response.status_code for route, response in responses.items()}
    assert statuses == dict.fromkeys(responses, 503)
    for response in responses.values():
        assert int(response.headers["retry-after"]) >= 1
        assert isinstance(response.json()["detail"], str)


async def _terminate_sessions(admin: asyncpg.Connection, database: str) -> None:
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
    )


@contextlib.asynccontextmanager
async def _api_and_admin(
    outage_database: OutageDatabase, postgres_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncpg.Connection, str]]:
    """The API on the outage database, an admin connection to the server, and the name of the
    database the admin acts on."""
    name = str(make_url(outage_database.url).database)
    queue = EQueue(outage_database.url, concurrency=0, poll_interval=0.05)
    add_tasks(queue)
    app = mount()
    admin = await asyncpg.connect(pg_dsn(postgres_url))
    try:
        async with queue.lifespan(app), http_client(app, raise_app_exceptions=False) as http:
            yield http, admin, name
    finally:
        await admin.close()


@pytest.mark.postgres_only
async def test_a_database_refusing_connections_answers_503_not_500(
    outage_database: OutageDatabase, postgres_url: str
) -> None:
    # The server is up but refuses sessions to this database (maintenance; the same family as
    # "the database system is starting up" and "too many connections").
    async with _api_and_admin(outage_database, postgres_url) as (http, admin, name):
        job_id = await _job_id(http)
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await _terminate_sessions(admin, name)
        responses = await _every_route(http, job_id)

    statuses = {route: response.status_code for route, response in responses.items()}
    assert statuses == dict.fromkeys(responses, 503)


@pytest.mark.postgres_only
async def test_after_a_database_restart_writes_answer_503_or_succeed_never_500(
    outage_database: OutageDatabase, postgres_url: str
) -> None:
    # A restart ends every session (57P01 admin shutdown) and the backend still holds them: a
    # write on one may fail, but as "try again" (503), and the next request works.
    statuses: list[int] = []
    async with _api_and_admin(outage_database, postgres_url) as (http, admin, name):
        job_id = await _job_id(http)
        for _ in range(8):
            await asyncio.gather(*(http.get("/jobs") for _ in range(3)))  # fill the pool
            await _terminate_sessions(admin, name)
            statuses.append((await _submit(http)).status_code)
        after = await http.get(f"/jobs/{job_id}")

    assert set(statuses) <= {201, 503}, statuses
    assert after.status_code == 200


async def test_result_turns_200_once_the_workers_complete_the_job(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        job_id = await _job_id(api.http)
        done = await eventually(lambda: _completed(api.http, job_id), timeout=10)

    assert done == {"id": job_id, "status": "completed", "result": 3}


async def _completed(http: httpx.AsyncClient, job_id: str) -> dict[str, object] | None:
    response = await http.get(f"/jobs/{job_id}/result")
    body: dict[str, object] = response.json()
    return body if response.status_code == 200 else None
