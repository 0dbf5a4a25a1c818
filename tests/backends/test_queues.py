"""Queues as data, on both backends: settings rows, and claims that obey them.

A paused queue's claim takes nothing; a concurrency limit caps the queue's running jobs over
every claimer, including claimers racing each other on separate connections; a rate limit caps
the starts inside any window of its period. The cheaper claim, for a queue without settings,
takes nothing from a queue that has some. Time is a ``ManualClock``: windows are crossed by
moving it, not by waiting.
"""

import asyncio
from datetime import UTC, datetime

import pytest

from fastapi_equeue.backend import (
    Backend,
    JobClaimParams,
    JobListParams,
    QueueConfigureParams,
    QueueSettingsRow,
)
from fastapi_equeue.clock import ManualClock
from fastapi_equeue.jobs import JobStatus
from tests.backends.conftest import MakeBackend
from tests.backends.factory import insert_one, job, outcome, registered, start_job

START = datetime(2030, 1, 1, tzinfo=UTC)


async def claim(
    backend: Backend, queue: str = "default", limit: int = 100, *, limited: bool = True
) -> tuple[int, int]:
    """(jobs claimed, room) of one claim by a fresh worker; by default the claim that enforces
    the queue's settings."""
    result = await backend.job_claim(
        JobClaimParams(
            worker_id=await registered(backend), queue=queue, limit=limit, limited=limited
        )
    )
    return len(result.jobs), result.room


async def limit(
    backend: Backend,
    name: str = "default",
    *,
    concurrency: int | None = None,
    rate: tuple[int, int] | None = None,
) -> None:
    await backend.queue_configure(
        QueueConfigureParams(
            name=name,
            set_concurrency=True,
            concurrency=concurrency,
            set_rate=True,
            rate_limit=rate[0] if rate else None,
            rate_period=rate[1] if rate else None,
        )
    )


async def settings(backend: Backend, name: str) -> QueueSettingsRow:
    (row,) = await backend.queue_find((name,))
    return row


class TestSettings:
    async def test_a_queue_without_settings_has_none(self, backend: Backend) -> None:
        await insert_one(backend, queue="mail")

        assert await settings(backend, "mail") == QueueSettingsRow("mail", claimable=True)

    async def test_pausing_creates_the_settings_and_resuming_keeps_them(
        self, backend: Backend
    ) -> None:
        await backend.queue_pause("reports", True)
        assert (await settings(backend, "reports")).paused is True

        await backend.queue_pause("reports", True)
        await backend.queue_pause("reports", False)
        assert await settings(backend, "reports") == QueueSettingsRow("reports")

    async def test_configure_sets_only_the_limits_it_is_told_to(self, backend: Backend) -> None:
        await backend.queue_configure(
            QueueConfigureParams(name="mail", set_concurrency=True, concurrency=4)
        )
        await backend.queue_configure(
            QueueConfigureParams(name="mail", set_rate=True, rate_limit=10, rate_period=60)
        )
        assert await settings(backend, "mail") == QueueSettingsRow(
            "mail", concurrency=4, rate_limit=10, rate_period=60
        )

        await backend.queue_configure(QueueConfigureParams(name="mail", set_concurrency=True))
        assert await settings(backend, "mail") == QueueSettingsRow(
            "mail", rate_limit=10, rate_period=60
        )

    async def test_find_lists_claimable_queues_and_queues_with_settings(
        self, backend: Backend
    ) -> None:
        await insert_one(backend, queue="a")
        await insert_one(backend, queue="c")
        running = await start_job(backend, queue="b")
        await backend.queue_pause("d", True)

        found = {row.name: row.claimable for row in await backend.queue_find(None)}

        # "b" only has a running job: nothing to claim, no settings, so not listed.
        assert found == {"a": True, "c": True, "d": False}
        assert running.queue not in found
        assert [row.name for row in await backend.queue_find(("c", "d", "e"))] == ["c", "d"]

    async def test_list_counts_every_queue_with_jobs_or_settings(self, backend: Backend) -> None:
        done = await start_job(backend, queue="mail")
        await backend.job_complete_many([outcome(done, "completed", result=1)])
        await insert_one(backend, queue="mail")
        await insert_one(backend, queue="mail")
        await backend.queue_pause("idle", True)

        queues = {row.settings.name: row for row in await backend.queue_list(None)}

        assert queues["mail"].counts == {JobStatus.QUEUED: 2, JobStatus.COMPLETED: 1}
        assert queues["idle"].counts == {}
        assert queues["idle"].settings.paused is True
        (only,) = await backend.queue_list("mail")
        assert only.settings.name == "mail"


class TestPausedClaim:
    async def test_a_paused_queue_starts_nothing_and_other_queues_go_on(
        self, backend: Backend
    ) -> None:
        await backend.job_insert_many([job(queue="mail"), job(queue="reports")])
        await backend.queue_pause("mail", True)

        assert await claim(backend, "mail") == (0, 0)
        assert await claim(backend, "reports") == (1, 100)

        await backend.queue_pause("mail", False)
        assert await claim(backend, "mail") == (1, 100)


class TestClaimWithoutSettings:
    """What a worker that has not yet heard of a queue's settings can claim: nothing."""

    async def test_it_claims_from_a_queue_without_settings(self, backend: Backend) -> None:
        await backend.job_insert_many([job() for _ in range(3)])

        assert await claim(backend, limit=2, limited=False) == (2, 2)
        assert await claim(backend, limit=2, limited=False) == (1, 2)

    @pytest.mark.parametrize("setting", ["paused", "concurrency", "rate"])
    async def test_it_takes_nothing_from_a_queue_with_settings(
        self, backend: Backend, setting: str
    ) -> None:
        await backend.job_insert_many([job() for _ in range(3)])
        if setting == "paused":
            await backend.queue_pause("default", True)
        else:
            await limit(
                backend,
                concurrency=10 if setting == "concurrency" else None,
                rate=(10, 1) if setting == "rate" else None,
            )

        assert await claim(backend, limited=False) == (0, 100)
        rows = await backend.job_list(JobListParams(limit=10))
        assert [row.status for row in rows] == [JobStatus.QUEUED] * 3

    async def test_settings_removed_let_it_claim_again(self, backend: Backend) -> None:
        await backend.job_insert_many([job() for _ in range(3)])
        await limit(backend, concurrency=1)
        await backend.queue_pause("default", True)
        await backend.queue_pause("default", False)
        await limit(backend, concurrency=None)

        assert await claim(backend, limited=False) == (3, 100)

    async def test_the_limited_claim_serves_a_queue_without_settings(
        self, backend: Backend
    ) -> None:
        await backend.job_insert_many([job() for _ in range(3)])

        assert await claim(backend, limited=True) == (3, 100)


class TestConcurrencyLimit:
    async def test_claims_stop_at_the_limit_and_resume_as_jobs_finish(
        self, backend: Backend
    ) -> None:
        await backend.job_insert_many([job() for _ in range(6)])
        await limit(backend, concurrency=2)

        first = await backend.job_claim(
            JobClaimParams(
                worker_id=await registered(backend), queue="default", limit=10, limited=True
            )
        )
        assert (len(first.jobs), first.room) == (2, 2)
        assert await claim(backend) == (0, 0)

        await backend.job_complete_many([outcome(first.jobs[0], "completed", result=1)])
        assert await claim(backend) == (1, 1)

    async def test_a_limit_counts_jobs_already_running(self, backend: Backend) -> None:
        await start_job(backend, queue="default")
        await backend.job_insert_many([job() for _ in range(3)])

        await limit(backend, concurrency=2)

        assert await claim(backend) == (1, 1)

    async def test_removing_the_limit_lets_claims_fill_their_slots(self, backend: Backend) -> None:
        await backend.job_insert_many([job() for _ in range(5)])
        await limit(backend, concurrency=1)
        assert await claim(backend) == (1, 1)

        await limit(backend, concurrency=None)

        assert await claim(backend) == (4, 100)

    async def test_concurrent_claimers_never_exceed_the_limit(
        self, make_backend: MakeBackend
    ) -> None:
        # Each claimer has its own connections: on PostgreSQL they race for the queue's row,
        # and a claimer that waited for it must count what the others took meanwhile.
        claimers = [await make_backend() for _ in range(6)]
        await claimers[0].job_insert_many([job() for _ in range(40)])
        await limit(claimers[0], concurrency=5)
        workers = [await registered(b) for b in claimers]

        async def claim_three(backend: Backend, worker_id: str) -> int:
            params = JobClaimParams(worker_id=worker_id, queue="default", limit=3, limited=True)
            return len((await backend.job_claim(params)).jobs)

        for _ in range(3):
            taken = await asyncio.gather(
                *(claim_three(b, w) for b, w in zip(claimers, workers, strict=True))
            )
            assert sum(taken) <= 5
        running = [row for w in workers for row in await claimers[0].job_processing_by_worker(w)]
        assert len(running) == 5


class TestRateLimit:
    async def test_starts_in_a_window_stop_at_the_rate(self, make_backend: MakeBackend) -> None:
        clock = ManualClock(START)
        backend = await make_backend(clock)
        await backend.job_insert_many([job() for _ in range(10)])
        await limit(backend, rate=(4, 1))

        assert await claim(backend, limit=3) == (3, 3)
        clock.advance(0.5)
        assert await claim(backend) == (1, 1)
        assert await claim(backend) == (0, 0)

        # The window is a second (and a margin) from each start, not a second from the first.
        clock.advance(0.55)
        assert await claim(backend) == (3, 3)
        clock.advance(0.5)
        assert await claim(backend) == (1, 1)

    @pytest.mark.parametrize("period", [60, 3600])
    async def test_longer_periods_hold_for_their_length(
        self, make_backend: MakeBackend, period: int
    ) -> None:
        clock = ManualClock(START)
        backend = await make_backend(clock)
        await backend.job_insert_many([job() for _ in range(4)])
        await limit(backend, rate=(2, period))

        assert await claim(backend) == (2, 2)
        clock.advance(period - 1)
        assert await claim(backend) == (0, 0)
        clock.advance(2)
        assert await claim(backend) == (2, 2)

    async def test_rate_and_concurrency_together_take_the_tighter(
        self, make_backend: MakeBackend
    ) -> None:
        backend = await make_backend(ManualClock(START))
        await backend.job_insert_many([job() for _ in range(10)])
        await limit(backend, concurrency=3, rate=(5, 1))

        assert await claim(backend) == (3, 3)
        assert await claim(backend) == (0, 0)
