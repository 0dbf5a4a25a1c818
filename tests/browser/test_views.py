"""Every page of the dashboard renders what the queue holds: the overview's counts and chart,
the queues, the running jobs with their progress, the failures with their tracebacks, the job
list with its filters and pages, one job, the workers, the schedules and the submit form.

The tests share one server per backend (see ``conftest.server``); each works in a queue of its
own. The ``page`` fixture fails a test whose page logged an error or fetched from elsewhere.
"""

import re
from datetime import UTC, datetime

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Api, PageLog, Server, until
from tests.browser.dashboard_app import SCHEDULE

VIEWS = (
    ("overview", ""),
    ("queues", "/queues"),
    ("active", "/active"),
    ("failures", "/failures"),
    ("jobs", "/jobs"),
    ("workers", "/workers"),
    ("schedules", "/schedules"),
    ("submit", "/submit"),
)


def rows(page: Page) -> list[str]:
    """The job ids of the list's rows, in order."""
    ids = page.locator("[data-test=job-row]").evaluate_all(
        "rows => rows.map(row => row.dataset.jobId)"
    )
    return list(ids)


def test_the_overview_counts_each_queues_jobs_and_draws_the_chart(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    done = [api.submit("add", {"a": n, "b": 1}, queue=queue_name) for n in range(2)]
    failed = api.submit("fail", {"message": "boom"}, queue=queue_name)
    for job in done:
        api.wait_for(job["id"], "completed")
    api.wait_for(failed["id"], "failed")

    page.goto(server.dashboard())

    expect(page.locator("[data-test=page-overview]")).to_be_visible()
    expect(page.locator("svg[data-test=chart]")).to_be_visible()
    # The chart's bars: this minute has completed and failed jobs.
    expect(page.locator("svg[data-test=chart] rect.completed").first).to_be_attached()
    expect(page.locator("svg[data-test=chart] rect.failed").first).to_be_attached()
    row = page.locator(f"[data-test=queue-row][data-queue='{queue_name}']")
    expect(row.locator("[data-test=count-completed]")).to_have_text("2")
    expect(row.locator("[data-test=count-failed]")).to_have_text("1")
    expect(row.locator("[data-test=count-queued]")).to_have_text("0")


def test_the_queues_page_lists_a_queue_with_its_counts_and_state(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    api.wait_for(api.submit("add", {"a": 1, "b": 1}, queue=queue_name)["id"], "completed")

    page.goto(server.dashboard("/queues"))

    row = page.locator(f"[data-test=queue-row][data-queue='{queue_name}']")
    expect(row).to_have_attribute("data-paused", "false")
    expect(row).to_contain_text("running")
    expect(row.locator("[data-test=pause]")).to_be_visible()
    expect(row.locator("[data-test=limits-form]")).to_be_visible()


def test_the_active_page_shows_a_running_job_whose_progress_moves(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    job = api.submit("slow", {"seconds": 30.0}, queue=queue_name)  # cancelled when seen
    api.wait_for(job["id"], "processing")
    try:
        page.goto(server.dashboard("/active"))

        row = page.locator(f"[data-test=job-row][data-job-id='{job['id']}']")
        expect(row).to_have_attribute("data-status", "processing")
        expect(row.locator("[data-test=running-for]")).to_have_text(re.compile(r"\d+ (ms|s)"))
        progress = row.locator("progress[data-test=progress]")
        expect(progress).to_be_attached()
        first = float(progress.get_attribute("value") or "nan")
        assert 0 < first < 1
        # The page refreshes itself (every 5 s, and on changes): no reload here.
        until(
            lambda: float(progress.get_attribute("value") or "nan") > first,
            what="the progress bar to move",
            timeout=15.0,
        )
    finally:
        api.post(f"/jobs/{job['id']}/cancel")


def test_the_failures_page_shows_a_failed_jobs_traceback(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    job = api.submit("fail", {"message": f"disk full in {queue_name}"}, queue=queue_name)
    api.wait_for(job["id"], "failed")

    page.goto(server.dashboard("/failures"))

    row = page.locator(f"[data-test=job-row][data-job-id='{job['id']}']")
    expect(row).to_have_attribute("data-status", "failed")
    expect(row).to_contain_text("after 2 attempts")
    expect(row.locator("[data-test=last-error]")).to_contain_text(f"disk full in {queue_name}")
    newest = row.locator("[data-test=traceback]").first
    expect(newest).to_be_visible()  # the newest attempt's <details> is open
    expect(newest).to_contain_text("Traceback (most recent call last)")
    expect(newest).to_contain_text(f"RuntimeError: disk full in {queue_name}")


def finished_jobs(api: Api, queue_name: str) -> dict[str, list[str]]:
    """Two ``add``, one ``echo`` (completed) and one ``fail`` (failed) in the queue: ids by type."""
    jobs = {
        "add": [api.submit("add", {"a": n, "b": n}, queue=queue_name)["id"] for n in range(2)],
        "echo": [api.submit("echo", {"text": "hello"}, queue=queue_name)["id"]],
        "fail": [api.submit("fail", {"message": "no"}, queue=queue_name)["id"]],
    }
    for job_type, ids in jobs.items():
        for job_id in ids:
            api.wait_for(job_id, "failed" if job_type == "fail" else "completed")
    return jobs


def test_the_jobs_list_filters_by_queue_status_and_type_and_finds_a_job_by_id(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    jobs = finished_jobs(api, queue_name)
    page.goto(server.dashboard(f"/jobs?queue={queue_name}"))
    filters = page.locator("[data-test=filters]")
    expect(page.locator("[data-test=job-row]")).to_have_count(4)
    assert sorted(rows(page)) == sorted(job_id for ids in jobs.values() for job_id in ids)
    expect(filters.locator("input[name=queue]")).to_have_value(queue_name)

    filters.locator("select[name=status]").select_option("failed")
    filters.locator("[data-test=apply-filters]").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator("[data-test=job-row]")).to_have_count(1)
    assert rows(page) == jobs["fail"]

    filters.locator("select[name=status]").select_option("completed")
    filters.locator("select[name=job_type]").select_option("add")
    filters.locator("[data-test=apply-filters]").click()
    expect(page).to_have_url(re.compile(r"job_type=add"))
    expect(page.locator("[data-test=job-row]")).to_have_count(2)
    assert sorted(rows(page)) == sorted(jobs["add"])

    filters.locator("input[name=queue]").fill("")
    filters.locator("input[name=q]").fill(jobs["echo"][0])
    filters.locator("[data-test=apply-filters]").click()
    expect(page).to_have_url(re.compile(r"q=01"))
    expect(page.locator("[data-test=job-row]")).to_have_count(1)
    assert rows(page) == jobs["echo"]


def test_the_jobs_filter_form_with_any_status_lists_every_status(
    page: Page, page_log: PageLog, server: Server, api: Api, queue_name: str
) -> None:
    page_log.allow(r"status of 422")
    jobs = finished_jobs(api, queue_name)
    page.goto(server.dashboard("/jobs"))
    filters = page.locator("[data-test=filters]")

    filters.locator("input[name=queue]").fill(queue_name)
    filters.locator("[data-test=apply-filters]").click()

    expect(page.locator("[data-test=job-row]")).to_have_count(4, timeout=2000)
    assert sorted(rows(page)) == sorted(job_id for ids in jobs.values() for job_id in ids)


def test_the_jobs_list_pages_through_more_than_fifty_jobs_by_keyset(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    api.pause(queue_name)  # they stay queued: nothing moves between the two pages
    ids = {api.submit("add", {"a": n, "b": 0}, queue=queue_name)["id"] for n in range(55)}

    page.goto(server.dashboard(f"/jobs?status=queued&queue={queue_name}"))

    expect(page.locator("[data-test=job-row]")).to_have_count(50)
    first = rows(page)
    page.locator("[data-test=next-page]").click()
    expect(page).to_have_url(re.compile(r"cursor="))
    expect(page.locator("[data-test=job-row]")).to_have_count(5)
    second = rows(page)
    expect(page.locator("[data-test=next-page]")).to_have_count(0)
    assert set(first) | set(second) == ids
    assert not set(first) & set(second)


def test_the_jobs_lists_next_page_without_a_status_filter_opens(
    page: Page, page_log: PageLog, server: Server, api: Api, queue_name: str
) -> None:
    page_log.allow(r"status of 422")
    api.pause(queue_name)
    for n in range(51):
        api.submit("add", {"a": n, "b": 0}, queue=queue_name)
    page.goto(server.dashboard(f"/jobs?queue={queue_name}"))
    expect(page.locator("[data-test=job-row]")).to_have_count(50)

    page.locator("[data-test=next-page]").click()

    expect(page.locator("[data-test=job-row]")).to_have_count(1, timeout=2000)


def test_the_job_page_shows_payload_result_attempts_times_and_dependencies(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    first = api.submit("add", {"a": 2, "b": 3}, queue=queue_name)
    api.wait_for(first["id"], "completed")
    job = api.submit("add", {"a": 20, "b": 22}, queue=queue_name, depends_on=[first["id"]])
    finished = api.wait_for(job["id"], "completed")

    page.goto(server.dashboard(f"/jobs/{job['id']}"))

    expect(page.locator("[data-test=page-job]")).to_contain_text(job["id"])
    expect(page.locator("[data-test=job-status]")).to_have_attribute("data-status", "completed")
    expect(page.locator("[data-test=payload]")).to_contain_text('"a": 20')
    expect(page.locator("[data-test=payload]")).to_contain_text('"b": 22')
    expect(page.locator("[data-test=result]")).to_have_text("42")

    def fact(label: str) -> Locator:
        return page.locator(f"dl.facts dt:text-is('{label}') + dd")

    expect(fact("Queue")).to_have_text(queue_name)
    expect(fact("Attempts")).to_have_text("1 of 3")
    for label, field in [("Created", "created_at"), ("Started", "started_at"),
                         ("Finished", "finished_at")]:  # fmt: skip
        at = datetime.fromisoformat(finished[field]).astimezone(UTC)
        expect(fact(label)).to_have_text(re.compile(rf"^\d+ m?s ago {at:%Y-%m-%d %H:%M:%S} UTC$"))
    dependencies = page.locator("[data-test=dependencies]")
    expect(dependencies.locator(f"a[href$='/jobs/{first['id']}']")).to_be_visible()
    expect(dependencies.locator("[data-test=status]")).to_have_text("completed")

    dependencies.locator("a").click()
    expect(page.locator("[data-test=result]")).to_have_text("5")
    expect(page.locator("[data-test=dependencies]")).to_have_text("nothing")


def test_the_workers_page_shows_the_servers_worker_with_a_recent_heartbeat(
    page: Page, server: Server
) -> None:
    page.goto(server.dashboard("/workers"))

    row = page.locator("[data-test=worker-row]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("alive")
    assert server.process is not None
    expect(row.locator("td").nth(2)).to_have_text(str(server.process.pid))
    # Beats every half second: never more than a few seconds old.
    expect(row.locator("[data-test=last-beat]")).to_have_text(re.compile(r"^(\d+ ms|[0-4] s) ago$"))


def test_the_schedules_page_shows_the_yearly_schedule_and_its_next_run(
    page: Page, server: Server
) -> None:
    page.goto(server.dashboard("/schedules"))

    row = page.locator(f"[data-test=schedule-row][data-schedule='{SCHEDULE}']")
    expect(row).to_contain_text("0 0 1 1 *")
    expect(row).to_contain_text("add")
    next_year = datetime.now(UTC).year + 1
    expect(row.locator("[data-test=next-run]")).to_contain_text(f"{next_year}-01-01 00:00:00 UTC")
    expect(row.locator("[data-test=next-run]")).to_contain_text(re.compile(r"in \d+ d"))


def test_the_submit_page_generates_a_form_from_the_payload_schema(
    page: Page, server: Server
) -> None:
    page.goto(server.dashboard("/submit?job_type=login"))
    expect(page.locator("[data-test=submit-form] input[name=password]")).to_be_visible()

    # Choosing another type reloads the page with its form.
    page.locator("select[data-test=submit-type]").select_option("add")

    expect(page).to_have_url(re.compile(r"job_type=add"))
    form = page.locator("[data-test=submit-form]")
    expect(form.locator("input[name=a][type=number]")).to_be_visible()
    expect(form.locator("input[name=b][type=number]")).to_be_visible()
    expect(form.locator("input[name=password]")).to_have_count(0)
    expect(form.locator("[data-test=submit]")).to_have_text("Submit add")


def test_every_view_loads_only_from_its_own_origin(
    page: Page, page_log: PageLog, server: Server, api: Api, queue_name: str
) -> None:
    job = api.submit("add", {"a": 1, "b": 2}, queue=queue_name)
    api.wait_for(job["id"], "completed")
    views = [*VIEWS, ("job", f"/jobs/{job['id']}")]

    for name, path in views:
        response = page.goto(server.dashboard(path))
        assert response is not None
        assert response.status == 200, name
        expect(page.locator(f"[data-test=page-{name}]")).to_be_visible()
        expect(page.locator("[data-test=live-status]")).to_have_text("live")

    requested = [url for url in page_log.requests if not url.startswith("data:")]
    assert len(requested) > 2 * len(views)  # each page, its script, style and stream at least
    outside = [url for url in requested if not url.startswith(f"{server.base_url}/")]
    assert outside == []
