"""A read-only dashboard (``EQueue(dashboard_read_only=True)``) shows everything and offers no
action, and refuses the actions a page could still send."""

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Api, PageLog, Server

ACTIONS = (
    "[data-test=cancel], [data-test=retry], [data-test=pause], [data-test=resume], "
    "[data-test=limits-form], [data-test=bulk-form], [data-test=bulk-preview], "
    "[data-test=bulk-run], [data-test=submit-form], [data-test=submit]"
)


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"EQ_DASHBOARD_READ_ONLY": "1"}


def test_a_read_only_dashboard_shows_every_page_without_an_action(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    failed = api.submit("fail", {"message": "no"}, queue=queue_name)
    api.wait_for(failed["id"], "failed")
    api.pause(queue_name)
    queued = api.submit("add", {"a": 1, "b": 1}, queue=queue_name)
    # What each page shows that a writable dashboard offers an action for.
    shown = {
        "/queues": f"[data-test=queue-row][data-queue='{queue_name}'][data-paused=true]",
        f"/jobs?queue={queue_name}": f"[data-test=job-row][data-job-id='{queued['id']}']",
        f"/jobs/{queued['id']}": "[data-test=job-status][data-status=queued]",
        f"/jobs/{failed['id']}": "[data-test=job-status][data-status=failed]",
        "/failures": f"[data-test=job-row][data-job-id='{failed['id']}']",
        "/submit?job_type=add": "select[data-test=submit-type]",
    }

    for path, selector in shown.items():
        page.goto(server.dashboard(path))
        expect(page.locator(selector)).to_be_visible()
        expect(page.locator(ACTIONS)).to_have_count(0)
    expect(page.locator("main")).to_contain_text("read-only")


def test_a_read_only_dashboard_refuses_an_action_sent_from_its_page(
    page: Page, page_log: PageLog, server: Server, api: Api, queue_name: str
) -> None:
    page_log.allow(r"status of 403")
    api.pause(queue_name)
    job = api.submit("add", {"a": 1, "b": 1}, queue=queue_name)
    page.goto(server.dashboard(f"/jobs/{job['id']}"))

    answer = page.evaluate(
        """async (url) => {
            const response = await fetch(url, {method: "POST", headers: {"HX-Request": "true"}});
            return [response.status, await response.text()];
        }""",
        server.dashboard(f"/jobs/{job['id']}/cancel"),
    )

    assert answer[0] == 403
    assert "read-only" in answer[1]
    assert api.job(job["id"])["status"] == "queued"
