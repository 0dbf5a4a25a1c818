"""The example app as its users run it: in-process on both backends (sign up, the welcome
email, the slow report, the failing charge and its manual retry, a flaky mail server), and
``python -m example_app`` as a real server, as the README's first command starts it.

Every wait is bounded by a deadline; none is a bare sleep.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastapi_equeue import JobStatus
from fastapi_equeue.testing import eventually
from tests.example.conftest import EXAMPLE_VARIABLES, REPO_ROOT, Example, LoadExample

WAIT = 30.0
"""A deadline for jobs that finish within a few seconds (retries wait 1 s each)."""


async def _signup(example: Example, email: str, name: str = "Ada") -> httpx.Response:
    return await example.http.post("/signup", json={"email": email, "name": name})


async def _submit(example: Example, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await example.http.post("/jobs", json={"job_type": job_type, "payload": payload})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _jobs(example: Example, job_type: str) -> list[dict[str, Any]]:
    response = await example.http.get("/jobs", params={"job_type": job_type, "limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def test_signup_creates_the_user_and_its_welcome_email_reaches_the_outbox(
    example: Example,
) -> None:
    response = await _signup(example, "ada@example.com", "Ada")

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"user_id", "welcome_job_id"}
    done = await example.queue.client.wait(body["welcome_job_id"], timeout=WAIT)
    assert done.status is JobStatus.COMPLETED, done.errors
    assert done.job_type == "send_email"
    assert done.payload["recipient_email"] == "ada@example.com"
    assert done.result == {"delivered": True, "outbox_id": 1}
    outbox = (await example.http.get("/outbox")).json()
    assert outbox == [{"id": 1, "recipient_email": "ada@example.com", "subject": "Welcome, Ada!"}]
    users = (await example.http.get("/users")).json()
    assert users == [{"id": body["user_id"], "email": "ada@example.com", "name": "Ada"}]
    # The job is visible through the jobs API too.
    job = (await example.http.get(f"/jobs/{body['welcome_job_id']}")).json()
    assert job["status"] == "completed"


async def test_a_duplicate_signup_is_refused_and_enqueues_no_second_email(
    example: Example,
) -> None:
    first = await _signup(example, "grace@example.com", "Grace")
    assert first.status_code == 201, first.text

    again = await _signup(example, "grace@example.com", "Grace Again")

    assert again.status_code == 409, again.text
    assert "already signed up" in again.json()["detail"]
    # The user insert and the enqueue were one transaction: neither happened the second time.
    assert len(await _jobs(example, "send_email")) == 1
    assert len((await example.http.get("/users")).json()) == 1
    await example.queue.client.wait(first.json()["welcome_job_id"], timeout=WAIT)
    assert len((await example.http.get("/outbox")).json()) == 1


async def test_an_invalid_signup_is_refused_and_stores_nothing(example: Example) -> None:
    response = await _signup(example, "not-an-email", "")

    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json()["detail"]} == {
        ("body", "email"),
        ("body", "name"),
    }
    assert await _jobs(example, "send_email") == []
    assert (await example.http.get("/users")).json() == []


# (Not a lone surrogate: FastAPI's own 422 echoes the input, and its JSON response cannot encode
# one, whatever the app does.)
ODD_NAMES = {
    "NUL": "Ada\x00Lovelace",
    "right-to-left and emoji": "\u202eadA \U0001f4a9\u200d",
    "200 accented letters": "\u00e9" * 200,
}


async def test_a_signup_with_odd_text_is_refused_or_stored_intact(example: Example) -> None:
    failures = {}
    for n, (what, name) in enumerate(ODD_NAMES.items()):
        email = f"odd{n}@example.com"
        body = json.dumps({"email": email, "name": name})
        try:
            response = await example.http.post(
                "/signup", content=body, headers={"content-type": "application/json"}
            )
        except Exception as exc:  # the app raised: a real client gets a 500
            failures[what] = f"raised {type(exc).__name__}: {str(exc)[:200]}"
            continue
        if response.status_code == 422:
            continue
        if response.status_code != 201:
            failures[what] = f"answered {response.status_code}: {response.text[:200]}"
            continue
        job = await example.queue.client.wait(response.json()["welcome_job_id"], timeout=WAIT)
        users = {user["email"]: user["name"] for user in (await example.http.get("/users")).json()}
        if users.get(email) != name or job.status is not JobStatus.COMPLETED:
            failures[what] = f"stored {users.get(email)!r:.60}, job {job.status}"

    assert not failures, "\n".join(f"{what}: {failure}" for what, failure in failures.items())


async def test_a_report_job_counts_the_users_and_the_emails_sent(example: Example) -> None:
    signup = await _signup(example, "lin@example.com", "Lin")
    await example.queue.client.wait(signup.json()["welcome_job_id"], timeout=WAIT)

    # POST /reports starts the slow (5 s) report on the "reports" queue...
    slow = await example.http.post("/reports", params={"title": "Weekly"})
    assert slow.status_code == 202, slow.text
    assert slow.json()["job_type"] == "generate_report"
    assert slow.json()["queue"] == "reports"
    assert slow.json()["payload"] == {"title": "Weekly"}
    # ...which this test does not wait for; a quick one goes through the jobs API.
    quick = await _submit(example, "generate_report", {"title": "Now", "seconds": 0.1})
    result = await example.http.get(f"/jobs/{quick['id']}/result", params={"wait": WAIT})

    assert result.status_code == 200, result.text
    assert result.json()["result"] == {"title": "Now", "users": 1, "emails_sent": 1}
    # It reported its progress as it went; the last report is on the job.
    job = (await example.http.get(f"/jobs/{quick['id']}")).json()
    assert job["progress"]["fraction"] == 1.0
    assert job["progress"]["message"] == "crunched 10 of 10 batches"
    cancelled = await example.http.post(f"/jobs/{slow.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text


async def test_the_hourly_report_is_a_schedule_with_its_next_run(example: Example) -> None:
    listed = await example.http.get("/jobs/schedules")

    assert listed.status_code == 200, listed.text
    (hourly,) = listed.json()
    assert hourly["name"] == "hourly"
    assert hourly["cron"] == "0 * * * *"
    assert hourly["job_type"] == "generate_report"
    next_run = datetime.fromisoformat(hourly["next_run_at"])
    assert next_run.minute == 0
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(hours=1)


async def test_a_charge_fails_both_attempts_and_a_manual_retry_queues_it_again(
    example: Example,
) -> None:
    job = await _submit(example, "charge_card", {"customer_email": "a@b.co", "amount_cents": 500})

    failed = await example.queue.client.wait(job["id"], timeout=WAIT)

    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert [error.attempt for error in failed.errors] == [1, 2]
    assert all(error.error.startswith("PaymentDeclined: ") for error in failed.errors)
    assert failed.last_error == "PaymentDeclined: card of a@b.co declined for 500 cents"
    retried = await example.http.post(f"/jobs/{job['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued"
    assert retried.json()["attempts"] == 0
    assert len(retried.json()["errors"]) == 2
    # A job that is not failed or cancelled cannot be retried.
    signup = await _signup(example, "kim@example.com", "Kim")
    welcome = signup.json()["welcome_job_id"]
    await example.queue.client.wait(welcome, timeout=WAIT)
    refused = await example.http.post(f"/jobs/{welcome}/retry")
    assert refused.status_code == 409
    assert refused.json()["status"] == "completed"


async def test_a_flaky_mail_server_shows_up_as_retries_until_the_email_goes_out(
    load_example: LoadExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with load_example(EXAMPLE_FLAKINESS="1.0") as example:
        signup = await _signup(example, "max@example.com", "Max")
        job_id = signup.json()["welcome_job_id"]

        async def failed_once() -> bool:
            job = await example.queue.client.get(job_id)
            return job is not None and len(job.errors) >= 1

        await eventually(failed_once, timeout=WAIT)
        monkeypatch.setattr(example.tasks, "FLAKINESS", 0.0)  # the mail server comes back
        done = await example.queue.client.wait(job_id, timeout=WAIT)

    assert done.status is JobStatus.COMPLETED
    assert done.attempts >= 2
    assert done.errors, "the failed attempts are kept"
    assert all(error.error.startswith("MailServerUnavailable: ") for error in done.errors)
    assert done.last_error is not None


async def test_the_jobs_api_needs_the_key_when_one_is_set(load_example: LoadExample) -> None:
    async with load_example(EXAMPLE_FLAKINESS="0", EXAMPLE_API_KEY="s3cret") as example:
        anonymous = await example.http.get("/jobs")
        wrong = await example.http.get("/jobs/stats", headers={"X-API-Key": "guess"})
        allowed = await example.http.get("/jobs", headers={"X-API-Key": "s3cret"})
        # The app's own routes stay open.
        signup = await _signup(example, "zoe@example.com", "Zoe")

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert allowed.status_code == 200
    assert signup.status_code == 201


async def test_the_docs_offer_a_body_per_job_type_that_is_accepted_as_is(
    example: Example,
) -> None:
    schema = (await example.http.get("/openapi.json")).json()
    examples = _submit_examples(schema)

    assert set(examples) == {"send_email", "generate_report", "charge_card"}
    for job_type, body in examples.items():
        response = await example.http.post("/jobs", json=body)
        assert response.status_code == 201, (job_type, response.text)
        assert response.json()["job_type"] == job_type
        # Do not leave the 5 s report (or the retrying charge) running at shutdown.
        await example.http.post(f"/jobs/{response.json()['id']}/cancel")


def _submit_examples(openapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ready-made ``POST /jobs`` bodies that /docs offers, by job type."""
    content = openapi["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in content["examples"].items()}


# -- python -m example_app ---------------------------------------------------------------------

START_DEADLINE = 30.0
EXIT_DEADLINE = 20.0
POLL = 0.05


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _until_ready(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    """Poll GET /docs until it answers 200; fail at the deadline, or at once if the server
    exits."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the example exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{base}/docs", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no /docs after {START_DEADLINE}s:\n{_tail(log)}")
        time.sleep(POLL)


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-6000:] if log.exists() else ""


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``python -m example_app`` from the repository root, on a SQLite file in ``tmp_path``
    and a free port; killed at teardown if it is still running."""
    port = _free_port()
    log = tmp_path / "example.log"
    env = {name: value for name, value in os.environ.items() if name not in EXAMPLE_VARIABLES}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'example.db'}",
        HOST="127.0.0.1",
        PORT=str(port),
        EXAMPLE_FLAKINESS="0",
        PYTHONUNBUFFERED="1",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "example_app"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(EXIT_DEADLINE)


@pytest.mark.process
def test_python_m_example_app_serves_docs_and_dashboard_runs_a_job_and_stops_on_sigterm(
    example_server: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    process, base, log = example_server
    _until_ready(process, base, log)

    with httpx.Client(base_url=base, timeout=WAIT + 10) as http:
        body = _submit_examples(http.get("/openapi.json").json())["send_email"]
        submitted = http.post("/jobs", json=body)
        assert submitted.status_code == 201, submitted.text
        assert submitted.headers["location"] == f"/jobs/{submitted.json()['id']}"
        result = http.get(f"{submitted.headers['location']}/result", params={"wait": 20})
        dashboard = http.get("/jobs/dashboard/jobs")
        assert result.status_code == 200, f"{result.text}\n{_tail(log)}"
        assert result.json()["status"] == "completed"
        assert result.json()["result"]["delivered"] is True
        assert dashboard.status_code == 200
        assert submitted.json()["id"] in dashboard.text

        # A dashboard left open does not hold the shutdown: its stream ends within seconds.
        with http.stream("GET", "/jobs/dashboard/stream") as stream:
            assert next(stream.iter_lines()).startswith("retry: ")
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(EXIT_DEADLINE)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"running {EXIT_DEADLINE}s after SIGTERM:\n{_tail(log)}"
                ) from None
    output = _tail(log)
    # uvicorn shuts down gracefully, then exits by the signal it got (or 0, in older releases).
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "stopped" in output  # the queue's worker
    assert f"{base}/docs" in output
    assert f"{base}/jobs/dashboard" in output
    assert (tmp_path / "example.db").exists()
