"""An open page follows the queue without a reload: jobs that another process finishes, and
what changed while the server was down and its event stream with it.

The server here runs no worker (``EQUEUE_CONCURRENCY=0``); a standalone worker process on the
same database does the work. What the page learns of it crosses processes: by LISTEN/NOTIFY on
PostgreSQL, by the change marker the server polls once a second on SQLite.
"""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from fastapi_equeue import EQueue
from tests.browser.conftest import Api, PageLog, Server
from tests.browser.dashboard_app import build_queue
from tests.conftest import _blocking
from tests.process.conftest import Worker

STREAM_BACK = 30_000
"""Milliseconds for the page to be live again after a restart: the stream backs off 1, 2, 4,
8 s between attempts while the server is down."""


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """The web server runs no worker: every job is done by ``worker``'s process."""
    return {"EQUEUE_CONCURRENCY": "0"}


@pytest.fixture(scope="module")
def worker(server: Server) -> Iterator[Worker]:
    """A standalone worker process on the server's database."""
    started = server.start_worker()
    yield started
    started.kill()


def mark_loaded(page: Page) -> None:
    """Mark the document, to tell later that the page was never reloaded."""
    page.evaluate("window.__loaded_once = true")


def never_reloaded(page: Page) -> bool:
    return page.evaluate("window.__loaded_once === true") is True


def test_a_job_finished_by_another_process_appears_without_a_reload(
    page: Page, server: Server, api: Api, worker: Worker, queue_name: str
) -> None:
    page.goto(server.dashboard(f"/jobs?queue={queue_name}"))
    expect(page.locator("[data-test=live-status]")).to_have_attribute("data-state", "live")
    expect(page.locator("[data-test=job-row]")).to_have_count(0)
    mark_loaded(page)

    job = api.submit("add", {"a": 20, "b": 22}, queue=queue_name)

    row = page.locator(f"[data-test=job-row][data-job-id='{job['id']}']")
    expect(row).to_have_attribute("data-status", "completed")
    assert never_reloaded(page)
    assert api.job(job["id"])["result"] == 42
    # Only the worker process serves: the server has no worker to run it.
    workers = page.context.request.get(f"{server.base_url}/jobs/dashboard/workers").text()
    assert f">{worker.pid}<" in workers
    assert server.process is not None
    assert f">{server.process.pid}<" not in workers


def test_the_page_reconnects_after_a_restart_and_shows_what_changed_meanwhile(
    page: Page, page_log: PageLog, server: Server, api: Api, worker: Worker, queue_name: str
) -> None:
    page_log.allow_server_down()
    page.goto(server.dashboard(f"/jobs?queue={queue_name}"))
    status = page.locator("[data-test=live-status]")
    expect(status).to_have_attribute("data-state", "live")
    mark_loaded(page)

    server.stop()
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status).to_have_text("reconnecting")
    job_id = enqueue_directly(server.database_url, queue_name)  # the worker runs it
    server.start()

    expect(status).to_have_attribute("data-state", "live", timeout=STREAM_BACK)
    row = page.locator(f"[data-test=job-row][data-job-id='{job_id}']")
    expect(row).to_have_attribute("data-status", "completed")
    assert never_reloaded(page)
    assert api.job(job_id)["result"] == 3


def enqueue_directly(database_url: str, queue_name: str) -> str:
    """Enqueue an ``add`` job straight into the database (the server being down); its id."""
    queue: EQueue = build_queue(database_url, concurrency=0)
    job_ids: list[str] = []

    async def enqueue() -> None:
        async with queue:
            job = await queue.client.enqueue("add", {"a": 1, "b": 2}, queue=queue_name)
            job_ids.append(job.id)

    _blocking(enqueue())
    return job_ids[0]
