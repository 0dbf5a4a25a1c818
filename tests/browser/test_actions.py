"""What a user does from the dashboard's pages takes effect, as the REST API then reports it:
cancel, retry, pause and resume, limits, a bulk retry, and a job submitted through the form
generated from its payload schema.

A job meant to stay queued waits in a paused queue of the test's own.
"""

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import Api, PageLog, Server, until


def test_cancelling_a_queued_job_from_its_page_cancels_it(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    api.pause(queue_name)
    job = api.submit("add", {"a": 1, "b": 2}, queue=queue_name)
    page.goto(server.dashboard(f"/jobs/{job['id']}"))
    expect(page.locator("[data-test=job-status]")).to_have_attribute("data-status", "queued")

    page.locator("[data-test=cancel]").click()

    expect(page.locator("[data-test=job-status]")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("[data-test=cancel]")).to_have_count(0)
    expect(page.locator("[data-test=retry]")).to_be_visible()
    assert api.job(job["id"])["status"] == "cancelled"


def test_retrying_a_failed_job_from_the_failures_page_queues_it_again(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    job = api.submit("fail", {"message": "try again"}, queue=queue_name)
    api.wait_for(job["id"], "failed")
    api.pause(queue_name)  # so that it stays queued once retried
    page.goto(server.dashboard("/failures"))
    row = page.locator(f"[data-test=job-row][data-job-id='{job['id']}']")

    row.locator("[data-test=retry]").click()

    expect(row).to_have_count(0)  # the list refreshed: it is no longer failed
    retried = api.job(job["id"])
    assert retried["status"] == "queued"
    assert retried["attempts"] == 0
    assert len(retried["errors"]) == 2  # the failed attempts are kept

    api.resume(queue_name)
    assert api.wait_for(job["id"], "failed")["attempts"] == 2


def test_pausing_and_resuming_a_queue_from_the_queues_page(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    api.wait_for(api.submit("add", {"a": 1, "b": 1}, queue=queue_name)["id"], "completed")
    page.goto(server.dashboard("/queues"))
    row = page.locator(f"[data-test=queue-row][data-queue='{queue_name}']")
    expect(row).to_have_attribute("data-paused", "false")

    row.locator("[data-test=pause]").click()

    expect(row).to_have_attribute("data-paused", "true")
    expect(row).to_contain_text("paused")
    assert api.queue_info(queue_name)["paused"] is True
    # A paused queue starts nothing.
    held = api.submit("add", {"a": 2, "b": 2}, queue=queue_name)

    row.locator("[data-test=resume]").click()

    expect(row).to_have_attribute("data-paused", "false")
    assert api.queue_info(queue_name)["paused"] is False
    assert api.wait_for(held["id"], "completed")["result"] == 4


def test_setting_a_queues_limits_with_the_limits_form(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    api.pause(queue_name)  # brings the queue into being
    page.goto(server.dashboard("/queues"))
    form = page.locator(f"[data-test=queue-row][data-queue='{queue_name}'] [data-test=limits-form]")

    form.locator("input[name=concurrency]").fill("3")
    form.locator("input[name=rate]").fill("10/second")
    form.locator("[data-test=limits]").click()

    until(
        lambda: api.queue_info(queue_name)["concurrency"] == 3,
        what="the queue's concurrency limit to be 3",
    )
    assert api.queue_info(queue_name)["rate"] == "10/second"
    # The page shows the limits it now has (the live region refreshed after the action).
    row = page.locator(f"[data-test=queue-row][data-queue='{queue_name}']")
    expect(row.locator("input[name=concurrency]")).to_have_value("3")
    expect(row.locator("input[name=rate]")).to_have_value("10/second")


def test_what_a_user_types_into_the_limits_form_survives_a_live_refresh(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    api.pause(queue_name)
    page.goto(server.dashboard("/queues"))
    row = page.locator(f"[data-test=queue-row][data-queue='{queue_name}']")
    expect(page.locator("[data-test=live-status]")).to_have_text("live")
    row.locator("input[name=concurrency]").fill("7")
    page.evaluate("document.querySelector('#live').dataset.before = 'refresh'")

    # A change: the page reads the queues again, and keeps what the user is typing.
    with page.expect_response(
        lambda r: r.request.method == "GET" and r.url.endswith("/jobs/dashboard/queues")
    ):
        api.submit("add", {"a": 1, "b": 1}, queue=queue_name)
    expect(row.locator("input[name=concurrency]")).to_have_value("7")
    expect(page.locator("#live[data-before]")).to_have_count(1)

    row.locator("[data-test=limits]").click()

    until(lambda: api.queue_info(queue_name)["concurrency"] == 7, what="concurrency 7")
    # Sent, the form no longer holds the refreshes back.
    api.submit("add", {"a": 1, "b": 1}, queue=queue_name)
    expect(page.locator("#live[data-before]")).to_have_count(0)
    expect(row.locator("input[name=concurrency]")).to_have_value("7")


def test_an_actions_message_shows_and_the_next_action_works(
    page: Page, page_log: PageLog, server: Server, api: Api, queue_name: str
) -> None:
    api.wait_for(api.submit("add", {"a": 1, "b": 1}, queue=queue_name)["id"], "completed")
    page.goto(server.dashboard("/queues"))
    row = page.locator(f"[data-test=queue-row][data-queue='{queue_name}']")

    row.locator("[data-test=pause]").click()

    expect(page.locator("#flash [data-test=message]")).to_have_text(
        f"Queue {queue_name} is paused.", timeout=3000
    )
    row.locator("[data-test=resume]").click()
    expect(row).to_have_attribute("data-paused", "false", timeout=3000)


def test_bulk_retry_previews_the_count_then_retries_every_failed_job_of_the_filter(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    failed = [api.submit("fail", {"message": f"no {n}"}, queue=queue_name) for n in range(3)]
    for job in failed:
        api.wait_for(job["id"], "failed")
    api.pause(queue_name)  # so that they stay queued once retried
    page.goto(server.dashboard(f"/jobs?status=failed&queue={queue_name}"))
    expect(page.locator("[data-test=job-row]")).to_have_count(3)

    page.locator("[data-test=bulk-preview]").click()

    expect(page.locator("[data-test=bulk-count]")).to_have_attribute("data-count", "3")
    expect(page.locator("[data-test=bulk-count]")).to_have_text("3 jobs will be queued again.")
    assert {api.job(job["id"])["status"] for job in failed} == {"failed"}  # a preview acts not

    page.locator("[data-test=bulk-run]").click()

    expect(page.locator("#flash [data-test=message]")).to_have_text("3 jobs queued again.")
    expect(page.locator("[data-test=job-row]")).to_have_count(0)
    assert {api.job(job["id"])["status"] for job in failed} == {"queued"}


def test_a_job_submitted_through_the_generated_form_runs(
    page: Page, server: Server, api: Api
) -> None:
    page.goto(server.dashboard("/submit?job_type=add"))
    form = page.locator("[data-test=submit-form]")

    form.locator("input[name=a]").fill("2")
    form.locator("input[name=b]").fill("3")
    form.locator("[data-test=submit]").click()

    message = page.locator("#flash [data-test=message]")
    expect(message).to_have_text(re.compile(r"^Job \S+ submitted\. Open the job$"))
    job_id = (message.inner_text()).split()[1]
    job = api.wait_for(job_id, "completed")
    assert (job["job_type"], job["payload"], job["result"]) == ("add", {"a": 2, "b": 3}, 5)

    message.locator("a").click()
    expect(page.locator("[data-test=result]")).to_have_text("5")
