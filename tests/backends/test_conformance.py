"""The Backend conformance suite: every behaviour of the storage seam, on SQLite and PostgreSQL.

Each test runs once per backend on an empty, migrated database. Rows are seeded through the
backend itself with the small ``job`` factory below; the only raw SQL is test setup that the seam
cannot express (ageing a heartbeat, bulk-filling the table, EXPLAIN).
"""

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fastapi_equeue.backend import (
    Backend,
    JobClaimParams,
    JobListParams,
    JobRow,
    Notification,
    Notifier,
)
from fastapi_equeue.backends import normalise_url
from fastapi_equeue.backends._queries import load_queries
from fastapi_equeue.backends._sql import WORKER_LOST
from fastapi_equeue.clock import SystemClock
from fastapi_equeue.jobs import JobStatus, new_job_id
from tests.backends.conftest import AgeWorker, MakeBackend
from tests.backends.factory import (
    DEADLINE,
    SLACK,
    claim_ids,
    error_for,
    get,
    insert_one,
    job,
    new_worker_id,
    outcome,
    registered,
    rescue,
    sorted_ids,
    start_job,
    start_lost_job,
    utcnow,
    worker,
)
from tests.conftest import pg_dsn


class Inbox:
    """Collects a notifier's notifications; tests wait for one with a deadline."""

    def __init__(self, notifier: Notifier) -> None:
        self.items: list[Notification] = []
        self._arrived = asyncio.Event()
        self.unsubscribe = notifier.subscribe(self._on)

    def _on(self, notification: Notification) -> None:
        self.items.append(notification)
        self._arrived.set()

    async def wait_for(
        self, predicate: Callable[[Notification], bool], timeout: float = DEADLINE
    ) -> Notification:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                self._arrived.clear()
                await self._arrived.wait()


# -- insert ------------------------------------------------------------------------------------


class TestInsert:
    async def test_insert_many_returns_rows_with_given_fields_and_defaults(
        self, backend: Backend
    ) -> None:
        before = utcnow()
        first = job(job_type="send_email", queue="mail", payload={"to": "a@example.com"})
        second = job(
            job_type="resize",
            queue="images",
            payload={"sizes": [1, 2], "meta": {"name": "żółw"}, "flag": None},
            priority=7,
            max_attempts=5,
            idempotency_key="resize-1",
        )

        rows = {row.id: row for row in await backend.job_insert_many([first, second])}
        after = utcnow()

        assert set(rows) == {first.id, second.id}
        for params in (first, second):
            row = rows[params.id]
            assert row.job_type == params.job_type
            assert row.queue == params.queue
            assert row.payload == params.payload
            assert row.priority == params.priority
            assert row.max_attempts == params.max_attempts
            assert row.idempotency_key == params.idempotency_key
            assert row.status is JobStatus.QUEUED
            assert row.attempts == 0
            assert before - SLACK <= row.created_at <= after + SLACK
            assert row.created_at.tzinfo is not None
            assert abs(row.scheduled_at - row.created_at) < timedelta(seconds=1)
            assert row.started_at is None
            assert row.finished_at is None
            assert row.result is None
            assert row.last_error is None
            assert row.errors == ()
            assert row.worker_id is None
            assert row.cancel_requested is False
        assert await backend.job_get(first.id) == rows[first.id]

    async def test_insert_with_delay_schedules_the_job_later(self, backend: Backend) -> None:
        row = await insert_one(backend, delay=120.0)

        delay = row.scheduled_at - row.created_at
        assert abs(delay - timedelta(seconds=120)) < timedelta(seconds=1)

    async def test_insert_with_run_at_schedules_at_that_instant(self, backend: Backend) -> None:
        run_at = datetime(2031, 5, 17, 8, 30, 15, 123456, tzinfo=UTC)

        row = await insert_one(backend, run_at=run_at, delay=5.0)

        assert row.scheduled_at == run_at

    async def test_insert_nothing_returns_no_rows(self, backend: Backend) -> None:
        assert await backend.job_insert_many([]) == []
        assert await backend.queue_stats() == []

    async def test_get_unknown_job_is_none(self, backend: Backend) -> None:
        assert await backend.job_get(new_job_id()) is None

    async def test_insert_in_a_rolled_back_host_transaction_leaves_no_row(
        self, backend: Backend, database_url: str
    ) -> None:
        engine = create_async_engine(normalise_url(database_url))
        params = job()
        try:
            async with engine.connect() as conn:
                transaction = await conn.begin()
                rows = await backend.job_insert_many([params], conn=conn)
                assert [row.id for row in rows] == [params.id]
                assert await backend.job_get(params.id, conn=conn) is not None
                await transaction.rollback()
        finally:
            await engine.dispose()

        assert await backend.job_get(params.id) is None

    async def test_insert_in_a_committed_host_transaction_is_visible_after_commit(
        self, backend: Backend, database_url: str
    ) -> None:
        engine = create_async_engine(normalise_url(database_url))
        params = job()
        try:
            async with engine.begin() as conn:
                await backend.job_insert_many([params], conn=conn)
        finally:
            await engine.dispose()

        row = await get(backend, params.id)
        assert row.status is JobStatus.QUEUED


# -- claim -------------------------------------------------------------------------------------


class TestClaim:
    async def test_claim_marks_jobs_processing_for_the_worker(self, backend: Backend) -> None:
        inserted = await insert_one(backend)
        worker_id = await registered(backend)
        before = utcnow()

        rows = (
            await backend.job_claim(JobClaimParams(worker_id=worker_id, queue="default", limit=10))
        ).jobs

        assert len(rows) == 1
        row = rows[0]
        assert row.id == inserted.id
        assert row.status is JobStatus.PROCESSING
        assert row.attempts == 1
        assert row.worker_id == worker_id
        assert row.started_at is not None
        assert before - SLACK <= row.started_at <= utcnow() + SLACK
        assert await backend.job_get(inserted.id) == row

    async def test_claim_orders_by_priority_then_scheduled_at_then_id(
        self, backend: Backend
    ) -> None:
        now = utcnow()
        early = now - timedelta(seconds=30)
        low_a, low_b, low_c = sorted_ids(3)
        high_early, high_late, negative = new_job_id(), new_job_id(), new_job_id()
        # Inserted in an order unlike the expected one, so only the claim's ORDER BY can sort.
        await backend.job_insert_many(
            [
                job(id=low_c, priority=0, run_at=early),
                job(id=high_late, priority=5, run_at=now - timedelta(seconds=10)),
                job(id=low_a, priority=0, run_at=early),
                job(id=high_early, priority=5, run_at=now - timedelta(seconds=20)),
                job(id=low_b, priority=0, run_at=early),
                job(id=negative, priority=-3, run_at=now - timedelta(seconds=60)),
            ]
        )

        order = [await claim_ids(backend, limit=1) for _ in range(7)]

        assert order == [[high_early], [high_late], [low_a], [low_b], [low_c], [negative], []]

    async def test_claim_returns_a_batch_highest_priority_first(self, backend: Backend) -> None:
        rows = await backend.job_insert_many([job(priority=p) for p in (1, 9, 4, 0, 7)])
        by_priority = {row.priority: row.id for row in rows}

        claimed = await claim_ids(backend, limit=3)

        assert claimed == [by_priority[9], by_priority[7], by_priority[4]]

    async def test_claim_respects_the_limit(self, backend: Backend) -> None:
        await backend.job_insert_many([job() for _ in range(5)])

        sizes = [len(await claim_ids(backend, limit=3)) for _ in range(3)]

        assert sizes == [3, 2, 0]

    async def test_claim_skips_jobs_scheduled_in_the_future(self, backend: Backend) -> None:
        due = await insert_one(backend, run_at=utcnow() - timedelta(seconds=1))
        await insert_one(backend, delay=60.0)
        await insert_one(backend, run_at=utcnow() + timedelta(minutes=5))

        assert await claim_ids(backend) == [due.id]
        assert await claim_ids(backend) == []

    async def test_claim_takes_only_its_queue(self, backend: Backend) -> None:
        rows = await backend.job_insert_many(
            [job(queue="mail"), job(queue="images"), job(queue="reports"), job(queue="mail")]
        )
        mail = {row.id for row in rows if row.queue == "mail"}

        assert set(await claim_ids(backend, queue="mail")) == mail
        assert await claim_ids(backend, queue="mail") == []
        assert [
            (await get(backend, i)).queue for i in await claim_ids(backend, queue="images")
        ] == ["images"]

    async def test_claim_from_an_unknown_queue_takes_nothing(self, backend: Backend) -> None:
        await insert_one(backend, queue="mail")

        assert await claim_ids(backend, queue="nobody") == []

    async def test_a_worker_without_a_row_claims_nothing_until_it_registers(
        self, backend: Backend
    ) -> None:
        # A worker declared lost has had its row deleted: what it claimed before learning so
        # would look abandoned to every rescuer at once, and run twice.
        row = await insert_one(backend)
        worker_id = new_worker_id()

        params = JobClaimParams(worker_id=worker_id, queue=row.queue, limit=5)
        assert (await backend.job_claim(params)).jobs == []

        await backend.worker_register(worker(worker_id))
        claimed = (await backend.job_claim(params)).jobs
        assert [r.id for r in claimed] == [row.id]

    async def test_claim_does_not_take_processing_or_finished_jobs(self, backend: Backend) -> None:
        running = await start_job(backend, queue="default")
        done = await start_job(backend, queue="default")
        await backend.job_complete_many([outcome(done, "completed", result=1)])

        assert await claim_ids(backend) == []
        assert (await get(backend, running.id)).attempts == 1

    async def test_claim_takes_a_retrying_job_once_it_is_due(self, backend: Backend) -> None:
        row = await start_job(backend)
        await backend.job_complete_many(
            [outcome(row, "retrying", error=error_for(1), retry_delay=0.0)]
        )

        claimed = (
            await backend.job_claim(
                JobClaimParams(worker_id=await registered(backend), queue=row.queue, limit=5)
            )
        ).jobs

        assert [(r.id, r.status, r.attempts) for r in claimed] == [
            (row.id, JobStatus.PROCESSING, 2)
        ]

    async def test_concurrent_claims_never_return_the_same_job(
        self, make_backend: MakeBackend
    ) -> None:
        first, second = await make_backend(), await make_backend()
        inserted = await first.job_insert_many([job(priority=i % 3) for i in range(60)])
        all_ids = {row.id for row in inserted}

        seen: list[str] = []
        for _ in range(10):
            a, b = await asyncio.gather(claim_ids(first, limit=7), claim_ids(second, limit=7))
            assert not set(a) & set(b)
            seen += a + b
            if not a and not b:
                break

        assert len(seen) == len(set(seen)) == len(all_ids)
        assert set(seen) == all_ids


# -- complete ----------------------------------------------------------------------------------


class TestComplete:
    @pytest.mark.parametrize(
        "result",
        [{"delivered": True, "n": 2}, "abc", [1, "two", None, {"x": 1.5}], None, 0, ""],
        ids=["object", "string", "list", "null", "zero", "empty-string"],
    )
    async def test_completed_stores_the_result(self, backend: Backend, result: Any) -> None:
        row = await start_job(backend)

        written = await backend.job_complete_many([outcome(row, "completed", result=result)])

        assert set(written) == {row.id}
        done = await get(backend, row.id)
        assert done.status is JobStatus.COMPLETED
        assert done.result == result
        assert type(done.result) is type(result)
        assert done.finished_at is not None
        assert done.started_at == row.started_at
        assert done.attempts == 1
        assert done.worker_id is None
        assert done.errors == ()

    async def test_retrying_schedules_the_next_attempt_and_records_the_error(
        self, backend: Backend
    ) -> None:
        row = await start_job(backend)
        error = error_for(1)
        before = utcnow()

        written = await backend.job_complete_many(
            [outcome(row, "retrying", error=error, retry_delay=30.0)]
        )
        after = utcnow()

        assert set(written) == {row.id}
        retrying = await get(backend, row.id)
        assert retrying.status is JobStatus.RETRYING
        assert before + timedelta(seconds=30) - SLACK <= retrying.scheduled_at
        assert retrying.scheduled_at <= after + timedelta(seconds=30) + SLACK
        assert retrying.errors == (error,)
        assert retrying.last_error == "ValueError: boom"
        assert retrying.attempts == 1
        assert retrying.finished_at is None
        assert retrying.worker_id is None
        assert await claim_ids(backend, queue=row.queue) == []

    async def test_errors_accumulate_oldest_first_and_last_error_is_the_latest(
        self, backend: Backend
    ) -> None:
        row = await start_job(backend, max_attempts=2)
        first_error = error_for(1, "ValueError: first")
        await backend.job_complete_many(
            [outcome(row, "retrying", error=first_error, retry_delay=0.0)]
        )
        [again] = (
            await backend.job_claim(
                JobClaimParams(worker_id=await registered(backend), queue=row.queue, limit=1)
            )
        ).jobs
        second_error = error_for(2, "KeyError: 'second'")

        await backend.job_complete_many([outcome(again, "failed", error=second_error)])

        failed = await get(backend, row.id)
        assert failed.status is JobStatus.FAILED
        assert failed.errors == (first_error, second_error)
        assert failed.last_error == "KeyError: 'second'"
        assert failed.attempts == 2

    @pytest.mark.parametrize("status", ["failed", "cancelled"])
    async def test_final_failure_states_set_finished_at(
        self, backend: Backend, status: str
    ) -> None:
        row = await start_job(backend)
        before = utcnow()

        written = await backend.job_complete_many([outcome(row, status, error=error_for(1))])

        assert set(written) == {row.id}
        final = await get(backend, row.id)
        assert final.status == status
        assert final.finished_at is not None
        assert before - SLACK <= final.finished_at <= utcnow() + SLACK
        assert final.worker_id is None
        assert final.cancel_requested is False

    async def test_interrupted_job_goes_back_queued_without_counting_the_attempt(
        self, backend: Backend
    ) -> None:
        row = await start_job(backend)

        written = await backend.job_complete_many([outcome(row, "queued")])

        assert set(written) == {row.id}
        queued = await get(backend, row.id)
        assert queued.status is JobStatus.QUEUED
        assert queued.attempts == 0
        assert queued.started_at is None
        assert queued.finished_at is None
        assert queued.worker_id is None
        assert queued.errors == ()
        assert await claim_ids(backend, queue=row.queue) == [row.id]

    async def test_a_batch_writes_every_outcome(self, backend: Backend) -> None:
        rows = [await start_job(backend) for _ in range(3)]

        written = await backend.job_complete_many(
            [
                outcome(rows[0], "completed", result={"i": 0}),
                outcome(rows[1], "failed", error=error_for(1)),
                outcome(rows[2], "retrying", error=error_for(1), retry_delay=10.0),
            ]
        )

        assert set(written) == {row.id for row in rows}
        statuses = [(await get(backend, row.id)).status for row in rows]
        assert statuses == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.RETRYING]


class TestCompletionFence:
    async def test_a_second_write_for_the_same_attempt_changes_nothing(
        self, backend: Backend
    ) -> None:
        row = await start_job(backend)
        await backend.job_complete_many([outcome(row, "completed", result="first")])
        done = await get(backend, row.id)

        written = await backend.job_complete_many(
            [outcome(row, "failed", error=error_for(1, "RuntimeError: late"))]
        )

        assert set(written) == set()
        assert await get(backend, row.id) == done

    async def test_a_write_from_another_worker_changes_nothing(self, backend: Backend) -> None:
        row = await start_job(backend)

        written = await backend.job_complete_many(
            [outcome(row, "completed", result="zombie", worker_id=new_worker_id())]
        )

        assert set(written) == set()
        assert await get(backend, row.id) == row

    async def test_a_write_for_a_stale_attempt_changes_nothing(self, backend: Backend) -> None:
        first = await start_job(backend)
        await backend.job_complete_many(
            [outcome(first, "retrying", error=error_for(1), retry_delay=0.0)]
        )
        [second] = (
            await backend.job_claim(
                JobClaimParams(worker_id=first.worker_id or "", queue=first.queue, limit=1)
            )
        ).jobs
        assert second.attempts == 2

        written = await backend.job_complete_many([outcome(first, "completed", result="old")])

        assert set(written) == set()
        assert await get(backend, first.id) == second

    async def test_fenced_rows_are_left_out_of_a_mixed_batch(self, backend: Backend) -> None:
        good, other = await start_job(backend), await start_job(backend)

        written = await backend.job_complete_many(
            [
                outcome(good, "completed", result=1),
                outcome(other, "completed", result=2, attempt=other.attempts + 1),
            ]
        )

        assert set(written) == {good.id}
        assert (await get(backend, other.id)).status is JobStatus.PROCESSING


# -- cancel and retry --------------------------------------------------------------------------


class TestCancel:
    async def test_cancel_queued_job_cancels_it_at_once(self, backend: Backend) -> None:
        row = await insert_one(backend)

        cancelled = await backend.job_cancel(row.id)

        assert cancelled is not None
        assert cancelled.status is JobStatus.CANCELLED
        assert cancelled.finished_at is not None
        assert cancelled.cancel_requested is False
        assert await get(backend, row.id) == cancelled
        assert await claim_ids(backend) == []

    async def test_cancel_retrying_job_cancels_it_at_once(self, backend: Backend) -> None:
        row = await start_job(backend)
        await backend.job_complete_many(
            [outcome(row, "retrying", error=error_for(1), retry_delay=60.0)]
        )

        cancelled = await backend.job_cancel(row.id)

        assert cancelled is not None
        assert cancelled.status is JobStatus.CANCELLED
        assert cancelled.errors == (await get(backend, row.id)).errors
        assert len(cancelled.errors) == 1

    async def test_cancel_processing_job_flags_it_for_its_worker(self, backend: Backend) -> None:
        row = await start_job(backend)
        untouched = await start_job(backend)

        flagged = await backend.job_cancel(row.id)

        assert flagged is not None
        assert flagged.status is JobStatus.PROCESSING
        assert flagged.cancel_requested is True
        assert flagged.finished_at is None
        assert flagged.worker_id == row.worker_id
        assert [
            (r.id, r.attempts, r.cancel_requested)
            for r in await backend.job_processing_by_worker(row.worker_id or "")
        ] == [(row.id, 1, True)]
        assert (await get(backend, untouched.id)).cancel_requested is False

    async def test_cancel_requested_is_cleared_by_the_final_write(self, backend: Backend) -> None:
        row = await start_job(backend)
        await backend.job_cancel(row.id)

        await backend.job_complete_many([outcome(row, "cancelled")])

        final = await get(backend, row.id)
        assert final.status is JobStatus.CANCELLED
        assert final.cancel_requested is False
        assert await backend.job_processing_by_worker(row.worker_id or "") == []

    async def test_cancel_finished_job_returns_none_and_changes_nothing(
        self, backend: Backend
    ) -> None:
        row = await start_job(backend)
        await backend.job_complete_many([outcome(row, "completed", result="ok")])
        done = await get(backend, row.id)

        assert await backend.job_cancel(row.id) is None
        assert await get(backend, row.id) == done

    async def test_cancel_unknown_job_returns_none(self, backend: Backend) -> None:
        assert await backend.job_cancel(new_job_id()) is None


async def test_processing_by_worker_lists_only_that_workers_running_jobs(
    backend: Backend,
) -> None:
    worker_id = new_worker_id()
    first = await start_job(backend, worker_id=worker_id)
    second = await start_job(backend, worker_id=worker_id)
    await start_job(backend)  # another worker's
    finished = await start_job(backend, worker_id=worker_id)
    await backend.job_complete_many([outcome(finished, "completed", result=1)])
    await insert_one(backend)

    running = await backend.job_processing_by_worker(worker_id)

    assert sorted((r.id, r.attempts, r.cancel_requested) for r in running) == sorted(
        [
            (first.id, 1, False),
            (second.id, 1, False),
        ]
    )
    assert await backend.job_processing_by_worker(new_worker_id()) == []


class TestRetry:
    @pytest.mark.parametrize("status", ["failed", "cancelled"])
    async def test_retry_queues_the_job_again_with_attempts_reset_and_errors_kept(
        self, backend: Backend, status: str
    ) -> None:
        row = await start_job(backend)
        error = error_for(1)
        await backend.job_complete_many([outcome(row, status, error=error)])

        retried = await backend.job_retry(row.id)

        assert retried is not None
        assert retried.status is JobStatus.QUEUED
        assert retried.attempts == 0
        assert retried.errors == (error,)
        assert retried.last_error == error.error
        assert retried.finished_at is None
        assert retried.started_at is None
        assert retried.worker_id is None
        assert await get(backend, row.id) == retried
        assert await claim_ids(backend, queue=row.queue) == [row.id]

    async def test_retry_queued_job_returns_none(self, backend: Backend) -> None:
        row = await insert_one(backend)

        assert await backend.job_retry(row.id) is None
        assert await get(backend, row.id) == row

    async def test_retry_completed_or_processing_job_returns_none(self, backend: Backend) -> None:
        running = await start_job(backend)
        done = await start_job(backend)
        await backend.job_complete_many([outcome(done, "completed", result=None)])

        assert await backend.job_retry(running.id) is None
        assert await backend.job_retry(done.id) is None
        assert await backend.job_retry(new_job_id()) is None
        assert (await get(backend, done.id)).status is JobStatus.COMPLETED


# -- idempotency -------------------------------------------------------------------------------


class TestIdempotency:
    async def test_insert_with_an_existing_key_is_skipped(self, backend: Backend) -> None:
        first = await insert_one(backend, idempotency_key="signup-42")

        again = await backend.job_insert_many([job(idempotency_key="signup-42", priority=9)])

        assert again == []
        assert [row.id for row in await backend.job_get_by_keys(["signup-42"])] == [first.id]
        assert await backend.job_get_by_keys(["signup-42"]) == [first]
        assert sum(s.count for s in await backend.queue_stats()) == 1

    async def test_the_key_holds_whatever_the_job_status(self, backend: Backend) -> None:
        row = await start_job(backend, idempotency_key="k-final")
        await backend.job_complete_many([outcome(row, "completed", result=1)])

        assert await backend.job_insert_many([job(idempotency_key="k-final")]) == []

    async def test_a_batch_skips_only_the_rows_whose_key_exists(self, backend: Backend) -> None:
        existing = await insert_one(backend, idempotency_key="a")
        fresh = job(idempotency_key="b")
        keyless = job()

        rows = await backend.job_insert_many([job(idempotency_key="a"), fresh, keyless])

        assert {row.id for row in rows} == {fresh.id, keyless.id}
        found = await backend.job_get_by_keys(["a", "b", "missing"])
        assert {row.id for row in found} == {existing.id, fresh.id}

    async def test_jobs_without_a_key_never_collide(self, backend: Backend) -> None:
        rows = await backend.job_insert_many([job(), job(), job()])

        assert len(rows) == 3

    async def test_concurrent_inserts_with_one_key_make_one_row(self, backend: Backend) -> None:
        attempts = [job(idempotency_key="one-key") for _ in range(20)]

        results = await asyncio.gather(*(backend.job_insert_many([a]) for a in attempts))

        winners = [rows for rows in results if rows]
        assert len(winners) == 1
        assert len(winners[0]) == 1
        stored = await backend.job_get_by_keys(["one-key"])
        assert [row.id for row in stored] == [winners[0][0].id]
        assert sum(s.count for s in await backend.queue_stats()) == 1


# -- list --------------------------------------------------------------------------------------


class SubMicrosecondClock(SystemClock):
    """The system clock, read through a float with digits below the microsecond, as real
    clocks' readings are (a datetime then rounds them)."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(math.floor(time.time() * 1e6) / 1e6 + 6e-7, UTC)


class TestList:
    async def test_list_pages_newest_first_with_a_keyset_cursor(
        self, make_backend: MakeBackend
    ) -> None:
        backend = await make_backend(SubMicrosecondClock())
        rows: list[JobRow] = []
        for _ in range(6):
            rows += await backend.job_insert_many([job()])
        rows += await backend.job_insert_many([job() for _ in range(6)])  # one created_at
        expected = [
            row.id for row in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
        ]

        pages: list[list[str]] = []
        after: tuple[datetime, str] | None = None
        while len(pages) <= len(rows):
            page = await backend.job_list(JobListParams(limit=3, after=after))
            pages.append([row.id for row in page])
            if len(page) < 3:
                break
            after = (page[-1].created_at, page[-1].id)

        assert [job_id for page in pages for job_id in page] == expected
        assert all(len(page) == 3 for page in pages[:-1])

    async def test_list_without_cursor_returns_the_newest(self, backend: Backend) -> None:
        older = await insert_one(backend)
        newer = await insert_one(backend)

        page = await backend.job_list(JobListParams(limit=1))

        assert [row.id for row in page] == [newer.id]
        assert newer.created_at >= older.created_at

    async def test_list_filters_by_status_job_type_and_queue(self, backend: Backend) -> None:
        running = await start_job(backend, job_type="resize", queue="images")
        mail = await insert_one(backend, job_type="send_email", queue="mail")
        resize = await insert_one(backend, job_type="resize", queue="images")
        report = await insert_one(backend, job_type="report", queue="mail")

        async def ids(**filters: Any) -> set[str]:
            return {row.id for row in await backend.job_list(JobListParams(limit=50, **filters))}

        assert await ids() == {mail.id, resize.id, report.id, running.id}
        assert await ids(status=JobStatus.PROCESSING) == {running.id}
        assert await ids(status=JobStatus.QUEUED) == {mail.id, resize.id, report.id}
        assert await ids(status=JobStatus.FAILED) == set()
        assert await ids(job_type="resize") == {resize.id, running.id}
        assert await ids(queue="mail") == {mail.id, report.id}
        assert await ids(queue="images", status=JobStatus.QUEUED) == {resize.id}
        assert await ids(job_type="report", queue="images") == set()

    async def test_list_filters_apply_with_a_cursor(self, make_backend: MakeBackend) -> None:
        backend = await make_backend(SubMicrosecondClock())
        wanted: list[JobRow] = []
        for i in range(6):
            rows = await backend.job_insert_many([job(queue="mail" if i % 2 else "other")])
            wanted += [row for row in rows if row.queue == "mail"]

        first = await backend.job_list(JobListParams(limit=2, queue="mail"))
        rest = await backend.job_list(
            JobListParams(limit=2, queue="mail", after=(first[-1].created_at, first[-1].id))
        )

        assert [row.id for row in first + rest] == [row.id for row in reversed(wanted)]


# -- rescue and workers ------------------------------------------------------------------------


class TestRescue:
    async def test_job_of_a_worker_whose_row_is_gone_goes_back_queued(
        self, backend: Backend
    ) -> None:
        row = await start_lost_job(backend)
        before = utcnow()

        rescued = await rescue(backend)

        assert [r.id for r in rescued] == [row.id]
        back = await get(backend, row.id)
        assert rescued[0] == back
        assert back.status is JobStatus.QUEUED
        assert back.attempts == 1
        assert back.worker_id is None
        assert back.finished_at is None
        assert back.last_error == WORKER_LOST
        assert back.last_error.startswith("WorkerLost")
        [lost] = back.errors
        assert lost.attempt == 1
        assert lost.error == WORKER_LOST
        assert lost.traceback is None
        assert before - SLACK <= lost.at <= utcnow() + SLACK
        assert await claim_ids(backend, queue=row.queue) == [row.id]

    async def test_job_of_a_worker_silent_past_stalled_after_goes_back_queued(
        self, backend: Backend, age_worker: AgeWorker
    ) -> None:
        silent = worker()
        await backend.worker_register(silent)
        row = await start_job(backend, worker_id=silent.id)
        await age_worker(silent.id, 120.0)

        rescued = await rescue(backend)

        assert [r.id for r in rescued] == [row.id]
        back = await get(backend, row.id)
        assert back.status is JobStatus.QUEUED
        assert back.attempts == 1
        assert back.last_error == WORKER_LOST

    async def test_job_of_a_live_worker_is_not_rescued(
        self, backend: Backend, age_worker: AgeWorker
    ) -> None:
        live = worker()
        await backend.worker_register(live)
        row = await start_job(backend, worker_id=live.id)
        await age_worker(live.id, 10.0)  # silent for a while, but less than stalled_after

        assert await rescue(backend) == []
        assert await get(backend, row.id) == row
        assert await backend.worker_heartbeat(live.id) is True

    async def test_job_on_its_last_attempt_fails(self, backend: Backend) -> None:
        row = await start_lost_job(backend, max_attempts=1)

        [rescued] = await rescue(backend)

        assert rescued.id == row.id
        assert rescued.status is JobStatus.FAILED
        assert rescued.attempts == 1
        assert rescued.finished_at is not None
        assert rescued.last_error == WORKER_LOST
        assert await claim_ids(backend, queue=row.queue) == []

    async def test_job_being_cancelled_ends_cancelled(self, backend: Backend) -> None:
        row = await start_lost_job(backend)
        await backend.job_cancel(row.id)

        [rescued] = await rescue(backend)

        assert rescued.id == row.id
        assert rescued.status is JobStatus.CANCELLED
        assert rescued.finished_at is not None
        assert rescued.cancel_requested is False

    async def test_rescue_is_idempotent_and_leaves_other_jobs_alone(self, backend: Backend) -> None:
        row = await start_lost_job(backend)
        queued = await insert_one(backend, queue="untouched")
        done = await start_lost_job(backend)
        await backend.job_complete_many([outcome(done, "completed", result=1)])
        done_row = await get(backend, done.id)

        first = await rescue(backend)
        second = await rescue(backend)

        assert [r.id for r in first] == [row.id]
        assert second == []
        assert await get(backend, queued.id) == queued
        assert await get(backend, done.id) == done_row

    async def test_the_lost_workers_late_write_is_fenced_off(self, backend: Backend) -> None:
        row = await start_lost_job(backend)
        await rescue(backend)

        written = await backend.job_complete_many([outcome(row, "completed", result="late")])

        assert set(written) == set()
        assert (await get(backend, row.id)).status is JobStatus.QUEUED


class TestWorkers:
    async def test_heartbeat_of_a_registered_worker_succeeds(self, backend: Backend) -> None:
        params = worker()
        await backend.worker_register(params)

        assert await backend.worker_heartbeat(params.id) is True

    async def test_heartbeat_of_an_unknown_worker_fails(self, backend: Backend) -> None:
        assert await backend.worker_heartbeat(new_worker_id()) is False

    async def test_heartbeat_fails_after_the_worker_was_forgotten(
        self, backend: Backend, age_worker: AgeWorker
    ) -> None:
        params = worker()
        await backend.worker_register(params)
        await age_worker(params.id, 120.0)

        await rescue(backend)

        assert await backend.worker_heartbeat(params.id) is False

    async def test_heartbeat_fails_after_deregister(self, backend: Backend) -> None:
        params = worker()
        await backend.worker_register(params)

        await backend.worker_deregister(params.id)

        assert await backend.worker_heartbeat(params.id) is False

    async def test_registering_again_revives_a_forgotten_worker(
        self, backend: Backend, age_worker: AgeWorker
    ) -> None:
        params = worker()
        await backend.worker_register(params)
        await age_worker(params.id, 120.0)
        await backend.worker_register(params)  # refreshes the beat instead of failing

        assert await rescue(backend) == []
        assert await backend.worker_heartbeat(params.id) is True

    async def test_heartbeat_keeps_a_worker_from_being_forgotten(
        self, backend: Backend, age_worker: AgeWorker
    ) -> None:
        params = worker()
        await backend.worker_register(params)
        row = await start_job(backend, worker_id=params.id)
        await age_worker(params.id, 120.0)

        assert await backend.worker_heartbeat(params.id) is True
        assert await rescue(backend) == []
        assert (await get(backend, row.id)).status is JobStatus.PROCESSING


# -- stats -------------------------------------------------------------------------------------


async def test_queue_stats_count_jobs_per_queue_and_status(backend: Backend) -> None:
    running = await start_job(backend, queue="mail")
    done = await start_job(backend, queue="images")
    await backend.job_complete_many([outcome(done, "completed", result=None)])
    await backend.job_insert_many([job(queue="mail"), job(queue="mail"), job(queue="images")])
    assert running.status is JobStatus.PROCESSING

    stats = await backend.queue_stats()

    counts = {(row.queue, row.status): row.count for row in stats}
    assert counts == {
        ("mail", JobStatus.QUEUED): 2,
        ("mail", JobStatus.PROCESSING): 1,
        ("images", JobStatus.QUEUED): 1,
        ("images", JobStatus.COMPLETED): 1,
    }
    assert all(isinstance(row.count, int) for row in stats)


# -- notifications -----------------------------------------------------------------------------


@pytest.fixture
async def inbox(backend: Backend) -> Inbox:
    """Notifications of the backend's notifier, listening (on PostgreSQL) before the test acts."""
    await backend.notifier.start()
    return Inbox(backend.notifier)


def available(queue: str) -> Callable[[Notification], bool]:
    return lambda n: n.kind == "available" and queue in n.values


def done(job_id: str) -> Callable[[Notification], bool]:
    return lambda n: n.kind == "done" and job_id in n.values


class TestNotifications:
    async def test_insert_announces_available_work_in_its_queue(
        self, backend: Backend, inbox: Inbox
    ) -> None:
        await backend.job_insert_many([job(queue="mail-notify")])

        notification = await inbox.wait_for(available("mail-notify"))

        assert notification.values == ("mail-notify",)

    async def test_insert_of_many_queues_announces_each(
        self, backend: Backend, inbox: Inbox
    ) -> None:
        await backend.job_insert_many([job(queue="n-a"), job(queue="n-b"), job(queue="n-a")])

        await inbox.wait_for(available("n-a"))
        await inbox.wait_for(available("n-b"))

    async def test_final_completion_announces_done_with_the_job_id(
        self, backend: Backend, inbox: Inbox
    ) -> None:
        row = await start_job(backend)

        await backend.job_complete_many([outcome(row, "completed", result="ok")])

        notification = await inbox.wait_for(done(row.id))
        assert notification.values == (row.id,)

    async def test_cancelling_a_running_job_announces_cancel(
        self, backend: Backend, inbox: Inbox
    ) -> None:
        row = await start_job(backend)

        await backend.job_cancel(row.id)

        await inbox.wait_for(lambda n: n.kind == "cancel" and n.values == (row.id,))

    async def test_retrying_announces_no_done(self, backend: Backend, inbox: Inbox) -> None:
        retried, finished = await start_job(backend), await start_job(backend)

        await backend.job_complete_many(
            [outcome(retried, "retrying", error=error_for(1), retry_delay=60.0)]
        )
        await backend.job_complete_many([outcome(finished, "failed", error=error_for(1))])

        # Notifications arrive in commit order: once the second write's "done" is here, the
        # first write's would have been too.
        await inbox.wait_for(done(finished.id))
        assert not [n for n in inbox.items if n.kind == "done" and retried.id in n.values]


# -- PostgreSQL only ---------------------------------------------------------------------------


@pytest.mark.postgres_only
async def test_bulk_insert_sends_one_notification_per_queue(
    backend: Backend, database_url: str
) -> None:
    received: list[str] = []
    enough, extra = asyncio.Event(), asyncio.Event()

    def on_message(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        received.append(payload)
        if len(received) >= 2:
            enough.set()
        if len(received) > 2:
            extra.set()

    listener = await asyncpg.connect(pg_dsn(database_url), timeout=5)
    try:
        await listener.add_listener("equeue", on_message)

        rows = await backend.job_insert_many(
            [job(queue="bulk-a" if i % 2 else "bulk-b") for i in range(500)]
        )
        assert len(rows) == 500

        await asyncio.wait_for(enough.wait(), DEADLINE)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(extra.wait(), 0.5)
    finally:
        await listener.close()

    assert sorted(received) == ["available:bulk-a", "available:bulk-b"]


@pytest.mark.postgres_only
async def test_claim_uses_the_partial_claimable_index_on_a_large_table(
    backend: Backend, database_url: str
) -> None:
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO equeue_jobs (id, job_type, queue, status, max_attempts, "
                    "attempts, finished_at) "
                    "SELECT gen_random_uuid(), 'old', 'default', 'completed', 1, 1, now() "
                    "FROM generate_series(1, 20000)"
                )
            )
        await backend.job_insert_many([job(priority=i % 4) for i in range(50)])
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE equeue_jobs"))
            result = await conn.execute(
                text("EXPLAIN " + load_queries("postgres")["job_claim"]),
                {
                    "limit": 10,
                    "worker_id": new_worker_id(),
                    "queue": "default",
                    "now": None,
                    "rate_margin": 0.05,
                },
            )
            plan = result.scalars().all()
    finally:
        await engine.dispose()

    plan_text = "\n".join(plan)
    assert "equeue_jobs_queue_claimable_idx" in plan_text, plan_text
    assert "Seq Scan on equeue_jobs" not in plan_text, plan_text
