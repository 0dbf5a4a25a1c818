"""The dashboard's actions over HTTP (in process): each works when sent by the dashboard's own
pages, and is refused (403) to viewers and to requests another site could make a browser send.
Bad input gets a 4xx with its reason."""

import html
import re
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from fastapi_equeue import JobStatus
from fastapi_equeue.dashboard import actions
from tests.api.conftest import ServeApi

DEADLINE = 10.0
FROM_PAGE = {"HX-Request": "true", "Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}


async def post(http: httpx.AsyncClient, path: str, **kwargs: Any) -> httpx.Response:
    """POST as the dashboard's page does, with ``headers`` changed (``None``: left out)."""
    headers = {**FROM_PAGE, **kwargs.pop("headers", {})}
    sent = {name: value for name, value in headers.items() if value is not None}
    return await http.post(f"/jobs/dashboard{path}", headers=sent, **kwargs)


async def test_cancel_and_retry_act_on_the_job(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as served:
        client = served.queue.client
        job = await client.enqueue("add", {"a": 1, "b": 2})

        cancelled = await post(served.http, f"/jobs/{job.id}/cancel")
        after_cancel = await client.get(job.id)
        retried = await post(served.http, f"/jobs/{job.id}/retry")
        after_retry = await client.get(job.id)
        again = await post(served.http, f"/jobs/{job.id}/retry")

    assert cancelled.status_code == 200
    assert cancelled.headers["hx-trigger"] == "eq:changed"
    assert f"Job {job.id} was cancelled." in cancelled.text
    assert after_cancel is not None
    assert after_cancel.status is JobStatus.CANCELLED
    assert retried.status_code == 200
    assert after_retry is not None
    assert after_retry.status is JobStatus.QUEUED
    assert again.status_code == 409
    assert "queued" in again.text


async def test_pause_resume_and_limits_change_the_queue(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as served:
        client = served.queue.client
        paused = await post(served.http, "/queues/mail/pause")
        (info,) = [q for q in await client.queues() if q.name == "mail"]
        page = (await served.http.get("/jobs/dashboard/queues")).text
        resumed = await post(served.http, "/queues/mail/resume")
        limited = await post(
            served.http, "/queues/mail/limits", data={"concurrency": "3", "rate": "10/minute"}
        )
        (limits,) = [q for q in await client.queues() if q.name == "mail"]
        unlimited = await post(served.http, "/queues/mail/limits", data={"concurrency": ""})
        (cleared,) = [q for q in await client.queues() if q.name == "mail"]
        bad = [
            await post(served.http, "/queues/mail/limits", data=data)
            for data in ({"concurrency": "zero"}, {"concurrency": "0"}, {"rate": "fast"})
        ]

    assert paused.status_code == 200
    assert info.paused
    assert re.search(r'data-queue="mail" data-paused="true"', page)
    assert resumed.status_code == 200
    assert limited.status_code == 200
    assert (limits.paused, limits.concurrency, limits.rate) == (False, 3, "10/minute")
    assert unlimited.status_code == 200
    assert (cleared.concurrency, cleared.rate) == (None, None)
    assert [r.status_code for r in bad] == [422, 422, 422]
    assert all('data-test="error"' in r.text for r in bad)


async def test_bulk_retry_shows_the_count_then_retries_what_the_filter_matches(
    serve_api: ServeApi,
) -> None:
    async with serve_api() as served:
        client = served.queue.client
        failed = [await client.enqueue("fail", {"reason": str(i)}) for i in range(4)]
        for job in failed:
            await client.wait(job.id, timeout=DEADLINE)
        other = await client.enqueue("add", {"a": 1, "b": 1})
        await client.wait(other.id, timeout=DEADLINE)
        # Paused, the queue keeps what is retried queued, for the test to see.
        await client.pause_queue("default")
        form = {"action": "retry", "status": "failed", "job_type": "", "queue": ""}

        preview = await post(served.http, "/bulk/preview", data=form)
        run = await post(served.http, "/bulk/run", data=form)
        after = [await client.get(job.id) for job in (*failed, other)]

    assert preview.status_code == 200
    assert 'data-count="4"' in preview.text
    assert "4 jobs will be queued again" in preview.text
    assert run.status_code == 200
    assert "4 jobs queued again." in run.text
    assert [job.status if job else None for job in after] == [JobStatus.QUEUED] * 4 + [
        JobStatus.COMPLETED
    ]


async def test_bulk_cancel_acts_on_the_newest_jobs_up_to_the_cap(
    serve_api: ServeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "BULK_CAP", 5)
    async with serve_api(concurrency=0) as served:
        client = served.queue.client
        # One by one, so that each is newer than the last.
        jobs = [await client.enqueue("add", {"a": i, "b": 0}, queue="bulk") for i in range(8)]
        form = {"action": "cancel", "status": "", "job_type": "", "queue": "bulk"}

        preview = await post(served.http, "/bulk/preview", data=form)
        run = await post(served.http, "/bulk/run", data=form)
        after = [await client.get(job.id) for job in jobs]

    assert "More than 5 jobs match: the newest 5 will be cancelled." in preview.text
    assert 'data-count="5"' in preview.text
    assert "5 jobs cancelled." in run.text
    assert [job.status if job else None for job in after] == [JobStatus.QUEUED] * 3 + [
        JobStatus.CANCELLED
    ] * 5


async def test_submit_creates_the_job_the_form_describes(serve_api: ServeApi) -> None:
    async with serve_api() as served:
        form_page = (await served.http.get("/jobs/dashboard/submit?job_type=add")).text
        created = await post(served.http, "/submit", data={"job_type": "add", "a": "2", "b": "3"})
        match = re.search(r"Job ([0-9a-f-]{36}) submitted", created.text)
        assert match is not None
        done = await served.queue.client.wait(match[1], timeout=DEADLINE)
        invalid = await post(served.http, "/submit", data={"job_type": "add", "a": "two"})
        missing = await post(served.http, "/submit", data={"job_type": "add", "a": "2"})
        unknown = await post(served.http, "/submit", data={"job_type": "nothing"})

    assert 'name="a"' in form_page
    assert 'type="number"' in form_page
    assert created.status_code == 200
    assert done.result == 5
    assert invalid.status_code == 422
    assert "a" in invalid.text
    assert missing.status_code == 422
    assert "b: Field required" in missing.text
    assert unknown.status_code == 422


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"HX-Request": ""}, "sent by the dashboard's own pages"),
        ({"Sec-Fetch-Site": "cross-site"}, "own site"),
        ({"Sec-Fetch-Site": "same-site"}, "own site"),
        # A browser too old to send Sec-Fetch-Site still sends Origin.
        ({"Sec-Fetch-Site": None, "Origin": "https://evil.example"}, "own site"),
    ],
    ids=["no-htmx-header", "cross-site", "same-site", "other-origin"],
)
async def test_actions_another_site_could_send_are_refused(
    serve_api: ServeApi, headers: dict[str, str], reason: str
) -> None:
    async with serve_api(concurrency=0) as served:
        job = await served.queue.client.enqueue("add", {"a": 1, "b": 2})
        refused = await post(served.http, f"/jobs/{job.id}/cancel", headers=headers)
        after = await served.queue.client.get(job.id)

    assert refused.status_code == 403
    assert reason in html.unescape(refused.text)
    assert after is not None
    assert after.status is JobStatus.QUEUED


async def _viewer(request: Request) -> bool:
    return request.headers.get("x-role") != "admin"


@pytest.mark.parametrize("read_only", [True, _viewer], ids=["flag", "per-request"])
async def test_a_read_only_dashboard_shows_no_action_and_refuses_them(
    serve_api: ServeApi, read_only: Any
) -> None:
    async with serve_api(concurrency=0, dashboard_read_only=read_only) as served:
        job = await served.queue.client.enqueue("add", {"a": 1, "b": 2})
        await served.queue.client.pause_queue("default")
        pages = [
            (await served.http.get(f"/jobs/dashboard{path}")).text
            for path in ("/jobs", f"/jobs/{job.id}", "/queues", "/failures", "/submit")
        ]
        refused = [
            await post(served.http, path, data=data)
            for path, data in (
                (f"/jobs/{job.id}/cancel", {}),
                ("/queues/default/resume", {}),
                ("/queues/default/limits", {"concurrency": "1"}),
                ("/bulk/run", {"action": "cancel"}),
                ("/submit", {"job_type": "add", "a": "1", "b": "1"}),
            )
        ]
        after = await served.queue.client.get(job.id)
        admin = None
        if read_only is _viewer:
            admin = await post(served.http, f"/jobs/{job.id}/cancel", headers={"x-role": "admin"})

    for page in pages:
        for action in ("cancel", "retry", "pause", "resume", "limits", "bulk-preview", "submit"):
            assert f'data-test="{action}"' not in page
    assert [r.status_code for r in refused] == [403] * 5
    assert all("read-only" in r.text for r in refused)
    assert after is not None
    assert after.status is JobStatus.QUEUED
    if admin is not None:
        assert admin.status_code == 200
