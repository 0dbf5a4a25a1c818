"""The dashboard shows what jobs hold without running it or giving secrets away, and refuses
actions that another site makes a browser send; its pages carry a strict CSP.
"""

import json
import re

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import Api, Server

SCRIPT = "<script>window.__xss=1</script>"
IMAGE = '<img src=x onerror="window.__xss=2">'
MASK = "••••••"


def injected(page: Page) -> int:
    """How many elements the payloads could have injected into the page's main part."""
    count: int = page.locator("main script, main img, main [onerror]").count()
    return count


def test_markup_in_payloads_results_and_errors_is_shown_as_text_and_never_runs(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    echoed = api.submit("echo", {"text": f"{SCRIPT} {IMAGE}"}, queue=queue_name)
    failed = api.submit("fail", {"message": f"{IMAGE} {SCRIPT}"}, queue=queue_name)
    api.wait_for(echoed["id"], "completed")
    api.wait_for(failed["id"], "failed")

    page.goto(server.dashboard(f"/jobs/{echoed['id']}"))
    as_json = json.dumps(f"{SCRIPT} {IMAGE}")  # the page shows values as JSON
    expect(page.locator("[data-test=payload]")).to_contain_text(f'"text": {as_json}')
    expect(page.locator("[data-test=result]")).to_have_text(as_json)
    assert injected(page) == 0
    assert page.evaluate("window.__xss") is None

    page.goto(server.dashboard(f"/jobs/{failed['id']}"))
    expect(page.locator("[data-test=traceback]").first).to_contain_text(
        f"RuntimeError: {IMAGE} {SCRIPT}"
    )
    assert injected(page) == 0
    assert page.evaluate("window.__xss") is None

    page.goto(server.dashboard(f"/jobs?queue={queue_name}&status=failed"))
    expect(page.locator("[data-test=job-row]")).to_have_count(1)
    page.goto(server.dashboard("/failures"))
    row = page.locator(f"[data-test=job-row][data-job-id='{failed['id']}']")
    expect(row.locator("[data-test=last-error]")).to_have_text(f"RuntimeError: {IMAGE} {SCRIPT}")
    assert injected(page) == 0
    assert page.evaluate("window.__xss") is None


def test_secrets_in_a_payload_are_masked_on_the_job_page(
    page: Page, server: Server, api: Api, queue_name: str
) -> None:
    secrets = {"password": f"hunter2-{queue_name}", "api_key": f"sk-live-{queue_name[-6:]}"}
    job = api.submit("login", {"username": "ada", **secrets}, queue=queue_name)
    api.wait_for(job["id"], "completed")

    page.goto(server.dashboard(f"/jobs/{job['id']}"))

    payload = page.locator("[data-test=payload]")
    expect(payload).to_contain_text('"username": "ada"')
    expect(payload).to_contain_text(f'"password": "{MASK}"')
    expect(payload).to_contain_text(f'"api_key": "{MASK}"')
    expect(page.locator("[data-test=result]")).to_have_text('"ada logged in"')
    shown = page.content() + page.locator("body").inner_text()
    for secret in secrets.values():
        assert secret not in shown
    # Masked when shown only: the job keeps them.
    assert api.job(job["id"])["payload"] == {"username": "ada", **secrets}


def test_an_action_not_sent_by_the_dashboards_own_pages_is_refused(
    server: Server, api: Api, queue_name: str
) -> None:
    api.pause(queue_name)
    job = api.submit("add", {"a": 1, "b": 1}, queue=queue_name)
    cancel = server.dashboard(f"/jobs/{job['id']}/cancel")
    attempts = {
        "a plain form post (no HX-Request)": {},
        "another site's script": {"HX-Request": "true", "Origin": "http://evil.example"},
        "a cross-site request": {"HX-Request": "true", "Sec-Fetch-Site": "cross-site"},
    }

    for what, headers in attempts.items():
        response = httpx.post(cancel, headers=headers, trust_env=False)
        assert response.status_code == 403, what
        assert 'data-test="error"' in response.text, what

    assert api.job(job["id"])["status"] == "queued"
    # The same request from the dashboard's own page is let through.
    allowed = httpx.post(
        cancel,
        headers={"HX-Request": "true", "Origin": server.base_url, "Sec-Fetch-Site": "same-origin"},
        trust_env=False,
    )
    assert allowed.status_code == 200
    assert api.job(job["id"])["status"] == "cancelled"


def test_every_page_has_a_csp_that_allows_no_inline_script_or_eval(
    page: Page, server: Server
) -> None:
    response = page.goto(server.dashboard())
    assert response is not None
    others = ("/queues", "/active", "/failures", "/jobs", "/workers", "/schedules", "/submit")
    pages = [response.headers] + [
        dict(httpx.get(server.dashboard(path), trust_env=False).headers) for path in others
    ]

    for headers in pages:
        policy = headers["content-security-policy"]
        directives = dict(
            [*part.strip().split(" ", 1), ""][:2] for part in policy.split(";") if part.strip()
        )
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert "unsafe" not in directives["script-src"]
        assert "unsafe" not in directives["style-src"]
        assert directives["frame-ancestors"] == "'none'"
        assert headers["x-content-type-options"] == "nosniff"
    # The page runs under it: htmx and the dashboard's script came from the page's origin.
    expect(page.locator("[data-test=live-status]")).to_have_text(re.compile("^live$"))
