"""The queue routes of the jobs router (``GET /jobs/queues``, ``POST /jobs/queues/{name}/pause``
and ``/resume``, ``PATCH /jobs/queues/{name}``) and the client methods behind them, on both
backends: what they answer, what they store, and what the workers do about it."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, status

import fastapi_equeue as equeue
from fastapi_equeue import EQueue, InvalidOption, Job, JobStatus, QueueClient, QueueInfo
from fastapi_equeue.testing import drain, eventually
from tests.api.conftest import ServeApi, Served

WAIT = 15.0
"""Deadline, in seconds, for anything the workers are expected to do."""
STATUSES = {job_status.value for job_status in JobStatus}
INFO_FIELDS = {"name", "paused", "concurrency", "rate", "counts"}
TOKEN = "Bearer let-me-in"
CREDENTIALS = {"authorization": TOKEN}
ADMIN = {**CREDENTIALS, "x-role": "admin"}


# -- helpers ---------------------------------------------------------------------------------


def _counts(**nonzero: int) -> dict[str, int]:
    """Every status with 0, except those given."""
    return {**dict.fromkeys(STATUSES, 0), **nonzero}


def _info(
    name: str,
    *,
    paused: bool = False,
    concurrency: int | None = None,
    rate: str | None = None,
    **counts: int,
) -> dict[str, object]:
    """A ``QueueInfo`` as the API answers it."""
    return {
        "name": name,
        "paused": paused,
        "concurrency": concurrency,
        "rate": rate,
        "counts": _counts(**counts),
    }


async def _stored(queue: EQueue) -> list[dict[str, Any]]:
    """Every queue as ``queues()`` reads it from the database, as JSON."""
    return [info.model_dump(mode="json") for info in await queue.client.queues()]


async def _stored_one(queue: EQueue, name: str) -> dict[str, Any]:
    (found,) = [info for info in await _stored(queue) if info["name"] == name]
    return found


async def _enqueue(http: httpx.AsyncClient, queue: str, text: str = "hi") -> str:
    response = await http.post(
        "/jobs", json={"job_type": "echo", "payload": {"text": text}, "queue": queue}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _status(client: QueueClient, job_id: str) -> JobStatus:
    job = await client.get(job_id)
    assert job is not None
    return job.status


async def _set_up_mail(http: httpx.AsyncClient) -> dict[str, Any]:
    """Queue ``mail``: paused, concurrency 4, 2/second, one queued job. Its info."""
    await _enqueue(http, "mail")
    assert (await http.post("/jobs/queues/mail/pause")).status_code == 200
    response = await http.patch("/jobs/queues/mail", json={"concurrency": 4, "rate": "2/second"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body == _info("mail", paused=True, concurrency=4, rate="2/second", queued=1)
    return body


def _loc(response: httpx.Response) -> list[object]:
    detail = response.json()["detail"]
    assert isinstance(detail, list), detail
    assert detail
    return list(detail[0]["loc"])


# -- listing ---------------------------------------------------------------------------------


async def test_no_queues_is_an_empty_list(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.get("/jobs/queues")
        stored = await api.queue.client.queues()

    assert response.status_code == 200
    assert response.json() == []
    assert stored == []


async def test_queues_lists_queues_with_jobs_or_settings_by_name_with_counts(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as api:
        client = api.queue.client
        # "reports": one completed and one failed job (run by drain), one queued.
        await client.enqueue("add", {"a": 1, "b": 2}, queue="reports")
        await client.enqueue("fail", {}, queue="reports")
        await drain(api.queue)
        await client.enqueue("echo", {"text": "x"}, queue="reports")
        # "mail": two queued jobs, one of them cancelled.
        await client.enqueue("echo", {"text": "x"}, queue="mail")
        cancelled = await client.enqueue("echo", {"text": "y"}, queue="mail")
        await client.cancel(cancelled.id)
        # Settings only, no jobs: a limit, and a pause.
        await client.configure_queue("zeta", concurrency=3)
        await api.http.post("/jobs/queues/billing/pause")
        response = await api.http.get("/jobs/queues")
        stored = await _stored(api.queue)

    assert response.status_code == 200
    body = response.json()
    assert body == [
        _info("billing", paused=True),
        _info("mail", queued=1, cancelled=1),
        _info("reports", queued=1, completed=1, failed=1),
        _info("zeta", concurrency=3),
    ]
    assert [queue["name"] for queue in body] == sorted(queue["name"] for queue in body)
    assert all(set(queue) == INFO_FIELDS for queue in body)
    assert all(set(queue["counts"]) == STATUSES for queue in body)
    assert stored == body


async def test_queues_returns_queue_info_models(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        await api.queue.client.enqueue("echo", {"text": "x"}, queue="mail")
        infos = await api.queue.client.queues()

    assert [type(info) for info in infos] == [QueueInfo]
    (mail,) = infos
    assert (mail.name, mail.paused, mail.concurrency, mail.rate) == ("mail", False, None, None)
    assert mail.counts == {s: int(s is JobStatus.QUEUED) for s in JobStatus}


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_get_queues_is_not_read_as_a_job_id(serve_api: ServeApi, prefix: str) -> None:
    async with serve_api(concurrency=0, prefix=prefix) as api:
        await api.queue.client.enqueue("echo", {"text": "x"}, queue="mail")
        listed = await api.http.get(f"{prefix}/jobs/queues")
        paused = await api.http.post(f"{prefix}/jobs/queues/mail/pause")
        resumed = await api.http.post(f"{prefix}/jobs/queues/mail/resume")
        patched = await api.http.patch(f"{prefix}/jobs/queues/mail", json={"concurrency": 2})
        stats = await api.http.get(f"{prefix}/jobs/stats")

    assert listed.status_code == 200, listed.text
    assert listed.json() == [_info("mail", queued=1)]
    assert (paused.status_code, paused.json()) == (200, _info("mail", paused=True, queued=1))
    assert (resumed.status_code, resumed.json()) == (200, _info("mail", queued=1))
    assert (patched.status_code, patched.json()) == (200, _info("mail", concurrency=2, queued=1))
    assert stats.status_code == 200


# -- pause and resume ------------------------------------------------------------------------


async def test_a_paused_queue_accepts_jobs_and_starts_none_until_resumed(
    serve_api: ServeApi,
) -> None:
    async with serve_api() as api:
        client = api.queue.client
        paused = await api.http.post("/jobs/queues/mail/pause")
        held = [await _enqueue(api.http, "mail", f"m{i}") for i in range(3)]
        # Jobs of another queue, enqueued after them, run to the end meanwhile.
        others = [await _enqueue(api.http, "default", f"d{i}") for i in range(3)]
        done = [await client.wait(job_id, timeout=WAIT) for job_id in others]
        still = [await _status(client, job_id) for job_id in held]
        listed = await api.http.get("/jobs/queues")
        resumed = await api.http.post("/jobs/queues/mail/resume")
        finished = [await client.wait(job_id, timeout=WAIT) for job_id in held]
        after = await _stored_one(api.queue, "mail")

    assert paused.status_code == 200
    assert paused.json() == _info("mail", paused=True)
    assert [job.status for job in done] == [JobStatus.COMPLETED] * 3
    assert still == [JobStatus.QUEUED] * 3
    assert _info("mail", paused=True, queued=3) in listed.json()
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert [(job.status, job.result) for job in finished] == [
        (JobStatus.COMPLETED, f"m{i}") for i in range(3)
    ]
    assert after == _info("mail", completed=3)


async def test_pause_and_resume_through_the_client(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        client = api.queue.client
        paused = await client.pause_queue("mail")
        job = await client.enqueue("echo", {"text": "x"}, queue="mail")
        other = await client.enqueue("echo", {"text": "y"})
        other_done = await client.wait(other.id, timeout=WAIT)
        still = await _status(client, job.id)
        resumed = await client.resume_queue("mail")
        finished = await client.wait(job.id, timeout=WAIT)

    assert isinstance(paused, QueueInfo)
    assert (paused.name, paused.paused) == ("mail", True)
    assert other_done.status is JobStatus.COMPLETED
    assert still is JobStatus.QUEUED
    assert (resumed.name, resumed.paused) == ("mail", False)
    assert (finished.status, finished.result) == (JobStatus.COMPLETED, "x")


async def test_pausing_or_resuming_twice_is_idempotent(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        await _enqueue(api.http, "mail")
        first = await api.http.post("/jobs/queues/mail/pause")
        second = await api.http.post("/jobs/queues/mail/pause")
        while_paused = await _stored(api.queue)
        resumed = await api.http.post("/jobs/queues/mail/resume")
        again = await api.http.post("/jobs/queues/mail/resume")
        after = await _stored(api.queue)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == second.json() == _info("mail", paused=True, queued=1)
    assert while_paused == [_info("mail", paused=True, queued=1)]
    assert (resumed.status_code, again.status_code) == (200, 200)
    assert resumed.json() == again.json() == _info("mail", queued=1)
    assert after == [_info("mail", queued=1)]


async def test_pausing_or_resuming_an_unused_queue_brings_it_into_being(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as api:
        paused = await api.http.post("/jobs/queues/fresh/pause")
        resumed = await api.http.post("/jobs/queues/other/resume")
        stored = await _stored(api.queue)

    assert (paused.status_code, paused.json()) == (200, _info("fresh", paused=True))
    assert (resumed.status_code, resumed.json()) == (200, _info("other"))
    assert stored == [_info("fresh", paused=True), _info("other")]


async def test_a_running_job_finishes_after_its_queue_is_paused(serve_api: ServeApi) -> None:
    async with serve_api() as api:
        client = api.queue.client
        running = await client.enqueue("hold", queue="slow")
        await asyncio.wait_for(api.gate.started.wait(), WAIT)
        paused = await api.http.post("/jobs/queues/slow/pause")
        waiting = await _enqueue(api.http, "slow")
        api.gate.release.set()
        finished = await client.wait(running.id, timeout=WAIT)
        # A job of another queue, enqueued after the hold job finished, completes too.
        other = await client.wait(await _enqueue(api.http, "default"), timeout=WAIT)
        still = await _status(client, waiting)
        stored = await _stored_one(api.queue, "slow")

    assert paused.status_code == 200
    assert paused.json() == _info("slow", paused=True, processing=1)
    assert (finished.status, finished.result) == (JobStatus.COMPLETED, "released")
    assert not api.gate.interrupted.is_set()
    assert other.status is JobStatus.COMPLETED
    assert still is JobStatus.QUEUED
    assert stored == _info("slow", paused=True, queued=1, completed=1)


async def test_pausing_one_queue_keeps_its_limits_and_other_queues(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        await api.http.patch("/jobs/queues/mail", json={"concurrency": 2, "rate": "5/minute"})
        await api.http.patch("/jobs/queues/news", json={"concurrency": 7})
        paused = await api.http.post("/jobs/queues/mail/pause")
        resumed = await api.http.post("/jobs/queues/mail/resume")
        stored = await _stored(api.queue)

    assert paused.json() == _info("mail", paused=True, concurrency=2, rate="5/minute")
    assert resumed.json() == _info("mail", concurrency=2, rate="5/minute")
    assert stored == [_info("mail", concurrency=2, rate="5/minute"), _info("news", concurrency=7)]


# -- limits ----------------------------------------------------------------------------------


async def test_patch_sets_keeps_and_removes_limits(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        await _enqueue(api.http, "mail")

        async def patch(body: dict[str, object]) -> tuple[int, object, dict[str, Any]]:
            response = await api.http.patch("/jobs/queues/mail", json=body)
            return response.status_code, response.json(), await _stored_one(api.queue, "mail")

        both = await patch({"concurrency": 3, "rate": "10/second"})
        rate_only = await patch({"rate": "600/minute"})
        concurrency_only = await patch({"concurrency": 5})
        nothing = await patch({})
        no_concurrency = await patch({"concurrency": None})
        await api.http.post("/jobs/queues/mail/pause")
        hourly = await patch({"rate": "7/hour"})
        no_rate = await patch({"rate": None})
        no_limits = await patch({"concurrency": None, "rate": None})

    def expected(**settings: Any) -> tuple[int, dict[str, object], dict[str, object]]:
        info = _info("mail", queued=1, **settings)
        return 200, info, info

    assert both == expected(concurrency=3, rate="10/second")
    assert rate_only == expected(concurrency=3, rate="600/minute")
    assert concurrency_only == expected(concurrency=5, rate="600/minute")
    assert nothing == expected(concurrency=5, rate="600/minute")
    assert no_concurrency == expected(rate="600/minute")
    assert hourly == expected(paused=True, rate="7/hour")
    assert no_rate == expected(paused=True)
    assert no_limits == expected(paused=True)


async def test_patch_on_an_unused_queue_brings_it_into_being(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as api:
        response = await api.http.patch("/jobs/queues/fresh", json={"rate": "1/second"})
        stored = await _stored(api.queue)

    assert response.status_code == 200
    assert response.json() == _info("fresh", rate="1/second")
    assert stored == [_info("fresh", rate="1/second")]


async def test_configure_queue_through_the_client_keeps_what_is_left_out(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as api:
        client = api.queue.client
        first = await client.configure_queue("mail", concurrency=2)
        second = await client.configure_queue("mail", rate="3/second")
        unchanged = await client.configure_queue("mail")
        third = await client.configure_queue("mail", concurrency=None)
        fourth = await client.configure_queue("mail", rate=None, concurrency=1)
        stored = await client.queues()

    assert isinstance(first, QueueInfo)
    settings = [(info.concurrency, info.rate) for info in (first, second, unchanged, third)]
    assert settings == [(2, None), (2, "3/second"), (2, "3/second"), (None, "3/second")]
    assert (fourth.concurrency, fourth.rate, fourth.paused) == (1, None, False)
    assert stored == [fourth]


async def _other_queues_still_run(api: Served) -> list[Job]:
    """Run a job of queue ``warmup``, then one of each of ``other0`` to ``other2`` in turn;
    return them finished.

    The first runs for half a second (ten poll intervals), so that the next ones meet whatever
    a held-back queue's producer does once a poll has passed. Each of those is of a queue of
    its own, and they are several, so that one starting by luck (as a slot frees) does not hide
    a worker that starts no job of other queues.
    """
    client = api.queue.client
    slow = await client.enqueue("slow_add", {"a": 1, "b": 2, "seconds": 0.5}, queue="warmup")
    done = [await client.wait(slow.id, timeout=WAIT)]
    for i in range(3):
        job_id = await _enqueue(api.http, f"other{i}", f"o{i}")
        done.append(await client.wait(job_id, timeout=WAIT))
    return done


async def test_a_concurrency_limit_holds_its_queue_and_not_the_others(serve_api: ServeApi) -> None:
    """Regression: a queue held back by its limit once made its producer claim in a tight loop
    that kept every free slot reserved, so that no other queue's job started."""
    async with serve_api(concurrency=2) as api:
        client = api.queue.client
        limited = await api.http.patch("/jobs/queues/serial", json={"concurrency": 1})
        first = await client.enqueue("hold", queue="serial")
        second = await client.enqueue("hold", queue="serial")
        await asyncio.wait_for(api.gate.started.wait(), WAIT)
        others = await _other_queues_still_run(api)
        while_held = await _stored_one(api.queue, "serial")
        api.gate.release.set()
        done = [await client.wait(job.id, timeout=WAIT) for job in (first, second)]

    assert limited.status_code == 200
    assert [(job.status, job.result) for job in others] == [
        (JobStatus.COMPLETED, result) for result in (3, "o0", "o1", "o2")
    ]
    assert while_held == _info("serial", concurrency=1, processing=1, queued=1)
    assert [job.status for job in done] == [JobStatus.COMPLETED] * 2


async def test_a_rate_limit_holds_its_queue_until_removed_and_not_the_others(
    serve_api: ServeApi,
) -> None:
    """Regression: as above, for a queue held back by its rate."""
    async with serve_api(concurrency=4) as api:
        client = api.queue.client
        await api.http.patch("/jobs/queues/rare", json={"rate": "1/hour"})
        jobs = [await _enqueue(api.http, "rare", f"r{i}") for i in range(2)]
        await eventually(lambda: _completed(client, jobs), timeout=WAIT)
        others = await _other_queues_still_run(api)
        statuses = sorted([await _status(client, job_id) for job_id in jobs])
        removed = await api.http.patch("/jobs/queues/rare", json={"rate": None})
        finished = [await client.wait(job_id, timeout=WAIT) for job_id in jobs]

    assert [job.status for job in others] == [JobStatus.COMPLETED] * 4
    assert statuses == sorted([JobStatus.COMPLETED, JobStatus.QUEUED])
    assert removed.status_code == 200
    assert (removed.json()["rate"], removed.json()["concurrency"]) == (None, None)
    assert [job.status for job in finished] == [JobStatus.COMPLETED] * 2


async def _completed(client: QueueClient, job_ids: list[str]) -> int:
    """How many of ``job_ids`` have completed."""
    return sum([await _status(client, job_id) is JobStatus.COMPLETED for job_id in job_ids])


# -- bad input: 422 and nothing changed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"concurrency": 2.0}, "concurrency"),
        ({"concurrency": "3"}, "concurrency"),
        ({"concurrency": [3]}, "concurrency"),
        ({"concurrency": 2**31}, "concurrency"),
        ({"rate": "ten/second"}, "rate"),
        ({"rate": "10/day"}, "rate"),
        ({"rate": "0/second"}, "rate"),
        ({"rate": "-1/minute"}, "rate"),
        ({"rate": "10"}, "rate"),
        ({"rate": ""}, "rate"),
        ({"rate": "10/second/extra"}, "rate"),
        ({"rate": 10}, "rate"),
        ({"rate": {"limit": 10}}, "rate"),
        ({"concurrency": 2, "rate": "often"}, "rate"),
        ({"rate": "5/second", "concurrency": 0}, "concurrency"),
        ({"colour": "red"}, "colour"),
        ({"concurrency": 2, "colour": "red"}, "colour"),
        ({"paused": False}, "paused"),
    ],
    ids=[
        "concurrency-0",
        "concurrency-negative",
        "concurrency-true",
        "concurrency-fraction",
        "concurrency-float",
        "concurrency-string",
        "concurrency-list",
        "concurrency-too-large",
        "rate-words",
        "rate-day",
        "rate-zero",
        "rate-negative",
        "rate-no-period",
        "rate-empty",
        "rate-trailing",
        "rate-number",
        "rate-object",
        "good-concurrency-bad-rate",
        "good-rate-bad-concurrency",
        "unknown-field",
        "good-concurrency-unknown-field",
        "paused-is-not-a-limit",
    ],
)
async def test_patch_bad_input_is_422_naming_the_field_and_changes_nothing(
    serve_api: ServeApi, body: dict[str, object], field: str
) -> None:
    async with serve_api(concurrency=0) as api:
        before = await _set_up_mail(api.http)
        response = await api.http.patch("/jobs/queues/mail", json=body)
        stored = await _stored(api.queue)

    assert response.status_code == 422, response.text
    assert _loc(response) == ["body", field]
    assert stored == [before]


@pytest.mark.parametrize(
    "content",
    [b"[]", b'[{"concurrency": 2}]', b'"concurrency"', b"5", b"null", b"{", b"", b"\xff"],
    ids=["list", "list-of-object", "string", "number", "null", "truncated", "empty", "not-utf8"],
)
async def test_patch_body_that_is_not_a_json_object_is_422_and_changes_nothing(
    serve_api: ServeApi, content: bytes
) -> None:
    async with serve_api(concurrency=0) as api:
        before = await _set_up_mail(api.http)
        response = await api.http.patch(
            "/jobs/queues/mail", content=content, headers={"content-type": "application/json"}
        )
        stored = await _stored(api.queue)

    assert response.status_code == 422, response.text
    assert _loc(response)[0] == "body"
    assert stored == [before]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "/pause", None),
        ("POST", "/resume", None),
        ("PATCH", "", {"concurrency": 1}),
        ("PATCH", "", {}),
    ],
    ids=["pause", "resume", "patch", "patch-empty"],
)
@pytest.mark.parametrize(
    "name",
    ["x" * 201, "é" * 201, "%00", "mail%00"],
    ids=["201-chars", "201-two-byte-chars", "nul", "ends-in-nul"],
)
async def test_a_bad_queue_name_is_422_naming_the_path_and_changes_nothing(
    serve_api: ServeApi, method: str, suffix: str, body: object, name: str
) -> None:
    async with serve_api(concurrency=0) as api:
        before = await _set_up_mail(api.http)
        response = await api.http.request(method, f"/jobs/queues/{name}{suffix}", json=body)
        stored = await _stored(api.queue)

    assert response.status_code == 422, response.text
    assert _loc(response) == ["path", "name"]
    assert stored == [before]


async def test_a_name_of_200_chars_is_a_queue(serve_api: ServeApi) -> None:
    name = "é" * 200
    async with serve_api(concurrency=0) as api:
        paused = await api.http.post(f"/jobs/queues/{name}/pause")
        patched = await api.http.patch(f"/jobs/queues/{name}", json={"concurrency": 2})
        stored = await _stored(api.queue)

    assert paused.status_code == 200, paused.text
    assert patched.json() == _info(name, paused=True, concurrency=2)
    assert stored == [_info(name, paused=True, concurrency=2)]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.configure_queue("mail", concurrency=0), "concurrency"),
        (lambda c: c.configure_queue("mail", concurrency=-5), "concurrency"),
        (lambda c: c.configure_queue("mail", concurrency=True), "concurrency"),
        (lambda c: c.configure_queue("mail", concurrency=1.5), "concurrency"),
        (lambda c: c.configure_queue("mail", concurrency="3"), "concurrency"),
        (lambda c: c.configure_queue("mail", rate="fast"), "rate"),
        (lambda c: c.configure_queue("mail", rate="10/day"), "rate"),
        (lambda c: c.configure_queue("mail", rate="0/second"), "rate"),
        (lambda c: c.configure_queue("mail", rate=10), "rate"),
        (lambda c: c.configure_queue("mail", concurrency=1, rate="often"), "rate"),
        (lambda c: c.configure_queue("mail", concurrency=0, rate="1/second"), "concurrency"),
        (lambda c: c.configure_queue("x" * 201, concurrency=1), "name"),
        (lambda c: c.configure_queue("", rate="1/second"), "name"),
        (lambda c: c.pause_queue("x" * 201), "name"),
        (lambda c: c.pause_queue(""), "name"),
        (lambda c: c.pause_queue("a\x00b"), "name"),
        (lambda c: c.resume_queue("x" * 201), "name"),
        (lambda c: c.resume_queue(None), "name"),
    ],
    ids=[
        "concurrency-0",
        "concurrency-negative",
        "concurrency-true",
        "concurrency-fraction",
        "concurrency-string",
        "rate-words",
        "rate-day",
        "rate-zero",
        "rate-number",
        "good-concurrency-bad-rate",
        "bad-concurrency-good-rate",
        "configure-long-name",
        "configure-empty-name",
        "pause-long-name",
        "pause-empty-name",
        "pause-nul-name",
        "resume-long-name",
        "resume-none-name",
    ],
)
async def test_the_client_raises_invalid_option_naming_the_field_and_changes_nothing(
    serve_api: ServeApi, call: Callable[[Any], Awaitable[QueueInfo]], field: str
) -> None:
    async with serve_api(concurrency=0) as api:
        before = await _set_up_mail(api.http)
        with pytest.raises(InvalidOption) as raised:
            await call(api.queue.client)
        stored = await _stored(api.queue)

    assert isinstance(raised.value, ValueError)
    assert raised.value.field == field
    assert stored == [before]


# -- access control --------------------------------------------------------------------------


async def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
    if authorization != TOKEN:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "credentials needed", {"WWW-Authenticate": "Bearer"}
        )


async def require_admin(x_role: Annotated[str | None, Header()] = None) -> None:
    if x_role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")


QUEUE_REQUESTS: list[tuple[str, str, object]] = [
    ("GET", "/jobs/queues", None),
    ("POST", "/jobs/queues/mail/pause", None),
    ("POST", "/jobs/queues/mail/resume", None),
    ("PATCH", "/jobs/queues/mail", {"concurrency": 1}),
    ("PATCH", "/jobs/queues/mail", {"rate": None}),
    # Bad input is refused for want of credentials before it is looked at.
    ("PATCH", "/jobs/queues/mail", {"concurrency": 0}),
    ("PATCH", "/jobs/queues/mail", [1]),
    ("POST", "/jobs/queues/" + "x" * 201 + "/pause", None),
]


@pytest.mark.parametrize("how", ["include_router", "app"])
async def test_queue_routes_behind_a_dependency_are_401_without_credentials(
    serve_api: ServeApi, how: str
) -> None:
    options: dict[str, Any] = {"dependencies": [Depends(require_token)]}
    if how == "app":
        app = FastAPI(dependencies=[Depends(require_token)])
        app.include_router(equeue.router)
        options = {"app": app}
    async with serve_api(concurrency=0, **options) as api:
        await api.queue.client.enqueue("echo", {"text": "x"}, queue="mail")
        await api.queue.client.configure_queue("mail", rate="2/second")
        before = await _stored(api.queue)
        refused = [
            await api.http.request(method, path, json=body) for method, path, body in QUEUE_REQUESTS
        ]
        wrong = await api.http.post(
            "/jobs/queues/mail/pause", headers={"authorization": "Bearer wrong"}
        )
        untouched = await _stored(api.queue)
        listed = await api.http.get("/jobs/queues", headers=CREDENTIALS)
        paused = await api.http.post("/jobs/queues/mail/pause", headers=CREDENTIALS)
        patched = await api.http.patch(
            "/jobs/queues/mail", json={"concurrency": 3}, headers=CREDENTIALS
        )

    assert [r.status_code for r in [*refused, wrong]] == [401] * (len(QUEUE_REQUESTS) + 1)
    assert all(r.json() == {"detail": "credentials needed"} for r in [*refused, wrong])
    assert untouched == before == [_info("mail", rate="2/second", queued=1)]
    assert (listed.status_code, listed.json()) == (200, before)
    assert paused.status_code == 200
    assert patched.json() == _info("mail", paused=True, concurrency=3, rate="2/second", queued=1)


async def test_queue_routes_behind_a_role_dependency_are_403_for_others(
    serve_api: ServeApi,
) -> None:
    dependencies = [Depends(require_token), Depends(require_admin)]
    async with serve_api(concurrency=0, dependencies=dependencies) as api:
        await api.queue.client.enqueue("echo", {"text": "x"}, queue="mail")
        before = await _stored(api.queue)
        forbidden = [
            await api.http.request(method, path, json=body, headers=CREDENTIALS)
            for method, path, body in QUEUE_REQUESTS
        ]
        untouched = await _stored(api.queue)
        allowed = await api.http.post("/jobs/queues/mail/pause", headers=ADMIN)

    assert [r.status_code for r in forbidden] == [403] * len(QUEUE_REQUESTS)
    assert untouched == before == [_info("mail", queued=1)]
    assert (allowed.status_code, allowed.json()) == (200, _info("mail", paused=True, queued=1))
