"""The documentation's screenshots of the dashboard: ``docs/images/dashboard-<view>.png``, 1280x800,
of a demo state (several queues, completed, failed, queued and running jobs with progress,
limits, a paused queue, schedules).

Run on demand only, so that a test run never rewrites the docs::

    EQ_SCREENSHOTS=1 pytest -p no:cacheprovider tests/browser/test_screenshots.py

SQLite only. The demo's tasks are ``dashboard_app``'s ``EQ_DEMO`` ones. So that the overview's
chart shows an hour rather than a minute, the finished jobs' times are spread over the last
hour, straight in the SQLite file, once they are done.
"""

import os
import random
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from tests.browser.conftest import Api, Server, until

pytestmark = pytest.mark.skipif(
    os.environ.get("EQ_SCREENSHOTS") != "1",
    reason="set EQ_SCREENSHOTS=1 to remake the docs' images",
)

IMAGES = Path(__file__).parents[2] / "docs" / "images"
SIZE: ViewportSize = {"width": 1280, "height": 800}
HOUR_US = 3600 * 1_000_000


@pytest.fixture(scope="module")
def backend_name() -> str:
    """SQLite only: the images need no second backend."""
    return "sqlite"


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"EQ_DEMO": "1"}


def fill_demo(server: Server, api: Api) -> dict[str, str]:
    """The demo state; the ids of a few jobs worth a page of their own."""
    rng = random.Random(7)
    api.post("/jobs/queues/billing/pause").raise_for_status()
    done = [
        api.submit("send_email", {"to": f"user{n}@example.com", "subject": "Your receipt"})["id"]
        for n in range(160)
    ]
    done += [
        api.submit("resize_image", {"url": f"https://cdn.example.com/p/{n}.jpg", "width": 320})[
            "id"
        ]
        for n in range(70)
    ]
    charges = [
        api.submit(
            "charge_card",
            {
                "customer_id": f"cus_{rng.randrange(10**6):06d}",
                "amount_cents": 1999 + 500 * n,
                "api_key": "sk_live_do_not_show",
            },
        )["id"]
        for n in range(6)
    ]
    report = api.submit("generate_report", {"month": "2026-11", "pages": 40})["id"]
    api.submit("generate_report", {"month": "2026-10", "pages": 160})
    for job_id in done:
        api.wait_for(job_id, "completed", timeout=60)
    api.post("/jobs/queues/billing/resume").raise_for_status()
    for job_id in charges:
        api.wait_for(job_id, "failed", timeout=30)
    api.patch("/jobs/queues/billing", json={"concurrency": 2, "rate": "10/second"})
    api.patch("/jobs/queues/images", json={"concurrency": 8})
    api.post("/jobs/queues/newsletters/pause").raise_for_status()
    for n in range(14):
        api.submit("send_email", {"to": f"list{n}@example.com", "subject": "News"},
                   queue="newsletters")  # fmt: skip
    spread_over_the_last_hour(server.database_url, rng, keep=charges[0])
    until(lambda: (api.job(report).get("progress") or {}).get("fraction", 0) >= 0.3,
          what="the report to be a third done", timeout=30)  # fmt: skip
    return {"job": charges[0]}


def spread_over_the_last_hour(database_url: str, rng: random.Random, keep: str) -> None:
    """Move each finished job but ``keep`` (whose page is shown, attempt times and all) back in
    time by up to an hour, the busier the more recent."""
    path = database_url.split(":///", 1)[1]
    with sqlite3.connect(path, timeout=10) as db:
        ids = [row[0] for row in db.execute(
            "SELECT id FROM equeue_jobs WHERE status IN ('completed', 'failed') AND id != :keep",
            {"keep": keep},
        )]  # fmt: skip
        for job_id in ids:
            back = int(HOUR_US * (1 - rng.random() ** 0.6) * 0.98)
            db.execute(
                "UPDATE equeue_jobs SET created_at = created_at - :b, "
                "scheduled_at = scheduled_at - :b, started_at = started_at - :b, "
                "finished_at = finished_at - :b WHERE id = :id",
                {"b": back, "id": job_id},
            )


def test_screenshots_of_every_view(page: Page, server: Server, api: Api) -> None:
    ids = fill_demo(server, api)
    page.set_viewport_size(SIZE)
    IMAGES.mkdir(parents=True, exist_ok=True)
    views = {
        "overview": "",
        "queues": "/queues",
        "active": "/active",
        "failures": "/failures",
        "jobs": "/jobs?status=completed",
        "job": f"/jobs/{ids['job']}",
        "workers": "/workers",
        "schedules": "/schedules",
        "submit": "/submit?job_type=send_email",
    }
    for name, path in views.items():
        page.goto(server.dashboard(path))
        expect(page.locator(f"[data-test=page-{name}]")).to_be_visible()
        expect(page.locator("[data-test=live-status]")).to_have_text("live")
        shot = IMAGES / f"dashboard-{name}.png"
        page.screenshot(path=shot)
        assert shot.stat().st_size > 10_000
