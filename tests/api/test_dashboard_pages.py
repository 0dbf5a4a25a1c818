"""The dashboard's pages over HTTP (in process): every view renders with the safety headers,
bad input gets a clear 4xx, values are escaped and secrets masked. The browser tests
(``tests/browser``) drive the same pages in Chromium."""

import re
from collections.abc import Callable

import pytest

from fastapi_equeue import EQueue, JobStatus
from tests.api.conftest import UNKNOWN_ID, ServeApi, http_client, mount

PAGES = ("", "/queues", "/active", "/failures", "/jobs", "/workers", "/schedules", "/submit")
DEADLINE = 10.0


def script_src(csp: str) -> str:
    (directive,) = [d.strip() for d in csp.split(";") if d.strip().startswith("script-src")]
    return directive


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.strip("/") or "overview")
async def test_every_view_renders_with_a_strict_content_security_policy(
    serve_api: ServeApi, path: str
) -> None:
    async with serve_api() as served:
        job = await served.queue.client.enqueue("add", {"a": 1, "b": 2})
        failed = await served.queue.client.enqueue("fail", {"reason": "no"})
        await served.queue.client.wait(job.id, timeout=DEADLINE)
        await served.queue.client.wait(failed.id, timeout=DEADLINE)

        response = await served.http.get(f"/jobs/dashboard{path}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert script_src(csp) == "script-src 'self'"
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    page = path.strip("/") or "overview"
    assert f'data-test="page-{page}"' in response.text
    # Nothing but our own files, no inline script, style or event handler.
    assert re.search(r'(src|href)="(https?:)?//', response.text) is None
    assert re.search(r"<script(?![^>]*\ssrc=)", response.text) is None
    assert re.search(r"<[^>]*\s(style|on[a-z]+)=", response.text) is None


async def test_the_pages_show_the_jobs_the_queue_holds(serve_api: ServeApi) -> None:
    async with serve_api() as served:
        client = served.queue.client
        job = await client.enqueue("add", {"a": 20, "b": 22})
        failed = await client.enqueue("fail", {"reason": "the disk is full"})
        await client.wait(job.id, timeout=DEADLINE)
        await client.wait(failed.id, timeout=DEADLINE)
        http = served.http

        overview = (await http.get("/jobs/dashboard")).text
        failures = (await http.get("/jobs/dashboard/failures")).text
        listed = (await http.get("/jobs/dashboard/jobs", params={"status": "completed"})).text
        found = (await http.get("/jobs/dashboard/jobs", params={"q": job.id})).text
        page = (await http.get(f"/jobs/dashboard/jobs/{job.id}")).text
        workers = (await http.get("/jobs/dashboard/workers")).text

    assert 'data-queue="default"' in overview
    assert 'data-test="chart"' in overview
    assert re.search(r'data-test="completed-hour">\s*1<', overview)
    assert re.search(r'data-test="failed-hour">\s*1<', overview)
    assert failed.id in failures
    assert "RuntimeError: the disk is full" in failures
    assert "Traceback (most recent call last)" in failures
    assert job.id in listed
    assert failed.id not in listed
    assert found.count('data-test="job-row"') == 1
    assert "&#34;a&#34;: 20" in page
    assert re.search(r'data-test="result">\s*42\s*<', page)
    assert 'data-test="worker-row"' in workers


async def test_the_job_list_pages_by_keyset(serve_api: ServeApi) -> None:
    async with serve_api(concurrency=0) as served:
        jobs = await served.queue.client.enqueue_many(
            [{"job_type": "add", "payload": {"a": i, "b": 0}} for i in range(60)]
        )
        first = (await served.http.get("/jobs/dashboard/jobs")).text
        cursor = re.search(r'cursor=([^"&]+)" data-test="next-page"', first)
        assert cursor is not None
        second = (await served.http.get(f"/jobs/dashboard/jobs?cursor={cursor[1]}")).text

    rows = [re.findall(r'data-job-id="([^"]+)"', text) for text in (first, second)]
    assert len(rows[0]) == 50
    assert len(rows[1]) == 10
    assert sorted(rows[0] + rows[1]) == sorted(job.id for job in jobs)
    assert 'data-test="next-page"' not in second


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/jobs/dashboard/jobs/{UNKNOWN_ID}", 404),
        ("/jobs/dashboard/jobs/not-an-id", 404),
        ("/jobs/dashboard/jobs?status=lost", 422),
        ("/jobs/dashboard/jobs?cursor=garbage", 422),
        ("/jobs/dashboard/failures?cursor=garbage", 422),
        ("/jobs/dashboard/jobs?queue=" + "q" * 300, 422),
        ("/jobs/dashboard/submit?job_type=" + "t" * 300, 422),
        ("/jobs/dashboard/static/dev/nothing.js", 404),
        ("/jobs/dashboard/static/dev/..%2Fpages.py", 404),
        ("/jobs/dashboard/static/dev/dashboard.py", 404),
    ],
)
async def test_bad_input_gets_a_clear_error_never_a_500(
    serve_api: ServeApi, path: str, status: int
) -> None:
    async with serve_api(concurrency=0) as served:
        response = await served.http.get(path)

    assert response.status_code == status
    assert "Traceback" not in response.text


async def test_values_are_escaped_and_secrets_masked(serve_api: ServeApi) -> None:
    attack = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    secret = "hunter2-do-not-show"

    def tasks(queue: EQueue) -> None:
        @queue.task
        async def login(
            username: str, password: str, options: dict[str, str], note: str
        ) -> dict[str, str]:
            return {"token": secret, "user": username}

    async with serve_api(tasks=tasks) as served:
        job = await served.queue.client.enqueue(
            "login",
            {
                "username": attack,
                "password": secret,
                "options": {"api_key": secret, "Authorization": secret, "color": "blue"},
                "note": f"postgresql://app:{secret}@db.internal/app",
            },
        )
        await served.queue.client.wait(job.id, timeout=DEADLINE)
        pages = [
            (await served.http.get(path)).text
            for path in (f"/jobs/dashboard/jobs/{job.id}", "/jobs/dashboard/jobs")
        ]

    for text in pages:
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert secret not in text
    page = pages[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("••••••") >= 4  # password, api_key, Authorization, the result's token
    assert "blue" in page
    assert "postgresql://app:••••••@db.internal/app" in page


async def test_the_database_url_is_never_shown(serve_api: ServeApi) -> None:
    def tasks(queue: EQueue) -> None:
        @queue.task(max_attempts=1)
        async def leak() -> None:
            raise RuntimeError(f"cannot reach {queue.config.database_url}")

    async with serve_api(tasks=tasks) as served:
        url = served.queue.config.database_url
        job = await served.queue.client.enqueue("leak")
        await served.queue.client.wait(job.id, timeout=DEADLINE)
        texts = [
            (await served.http.get(path)).text
            for path in (f"/jobs/dashboard/jobs/{job.id}", "/jobs/dashboard/failures")
        ]

    for text in texts:
        assert url not in text
        assert "cannot reach [database url]" in text


async def test_links_and_assets_follow_the_mount_prefix(
    make_queue: Callable[..., EQueue],
) -> None:
    queue = make_queue(concurrency=0)
    app = mount(prefix="/ops")
    async with queue.lifespan(app), http_client(app) as http:
        page = await http.get("/ops/jobs/dashboard")
        assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', page.text)
        answers = [await http.get(path) for path in assets]

    assert page.status_code == 200
    assert 'data-stream="/ops/jobs/dashboard/stream"' in page.text
    assert len(assets) == 3
    assert all(path.startswith("/ops/jobs/dashboard/static/") for path in assets)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all("immutable" in a.headers["cache-control"] for a in answers)
    assert answers[0].headers["content-type"].startswith("text/css")


async def test_a_failed_jobs_page_lists_each_attempts_error(serve_api: ServeApi) -> None:
    def tasks(queue: EQueue) -> None:
        attempts = iter(("first cause", "second cause"))

        @queue.task(max_attempts=2, retry_delay=0)
        async def twice() -> None:
            raise ValueError(next(attempts))

    async with serve_api(tasks=tasks) as served:
        job = await served.queue.client.enqueue("twice")
        done = await served.queue.client.wait(job.id, timeout=DEADLINE)
        page = (await served.http.get(f"/jobs/dashboard/jobs/{job.id}")).text

    assert done.status is JobStatus.FAILED
    assert page.count('data-test="attempt"') == 2
    assert "ValueError: first cause" in page
    assert "ValueError: second cause" in page


async def test_empty_filters_filter_nothing_and_pager_links_carry_only_what_is_set(
    serve_api: ServeApi,
) -> None:
    async with serve_api(concurrency=0) as served:
        await served.queue.client.enqueue_many(
            [{"job_type": "add", "payload": {"a": i, "b": 0}} for i in range(55)]
        )
        # What the filter form sends with "any" status and type and no queue:
        page = await served.http.get("/jobs/dashboard/jobs?status=&job_type=&queue=&q=")

    assert page.status_code == 200
    assert page.text.count('data-test="job-row"') == 50
    (older,) = re.findall(r'href="([^"]+)" data-test="next-page"', page.text)
    assert re.fullmatch(r"/jobs/dashboard/jobs\?cursor=[\w-]+", older)
