"""Retry delay policies: fixed seconds, a callable of the attempt, or exponential backoff."""

import math

import pytest

from fastapi_equeue.retry import BACKOFF_CAP, delay_for, exponential_backoff


class TestFixed:
    @pytest.mark.parametrize("attempt", [1, 2, 5, 50])
    def test_fixed_delay_is_the_same_for_every_attempt(self, attempt: int) -> None:
        assert delay_for(10, attempt) == 10.0
        assert delay_for(2.5, attempt) == 2.5

    def test_fixed_zero_retries_at_once(self) -> None:
        assert delay_for(0, 3) == 0.0

    def test_a_negative_delay_becomes_zero(self) -> None:
        assert delay_for(-5, 1) == 0.0


class TestCallable:
    def test_callable_receives_the_attempt_number(self) -> None:
        seen: list[int] = []

        def linear(attempt: int) -> float:
            seen.append(attempt)
            return attempt * 3.0

        assert [delay_for(linear, attempt) for attempt in (1, 2, 4)] == [3.0, 6.0, 12.0]
        assert seen == [1, 2, 4]

    def test_callable_returning_an_int_gives_a_float(self) -> None:
        delay = delay_for(lambda attempt: 7, 1)

        assert delay == 7.0
        assert isinstance(delay, float)

    def test_a_negative_result_becomes_zero(self) -> None:
        assert delay_for(lambda attempt: -1.0, 2) == 0.0

    @pytest.mark.parametrize("value", [math.inf, math.nan], ids=["inf", "nan"])
    def test_a_non_finite_result_still_gives_a_finite_delay(self, value: float) -> None:
        # The delay is stored as a time; an infinite or NaN one cannot be written.
        delay = delay_for(lambda attempt: value, 1)

        assert math.isfinite(delay)
        assert delay >= 0.0


class TestExponentialBackoff:
    @pytest.mark.parametrize("attempt", range(1, 12))
    def test_doubles_per_attempt_within_the_jitter(self, attempt: int) -> None:
        base = 2.0 ** (attempt - 1)

        delays = [delay_for(None, attempt) for _ in range(50)]

        assert all(0.75 * base <= d <= 1.25 * base for d in delays)

    def test_is_the_default_policy(self) -> None:
        delays = [delay_for(None, 3) for _ in range(50)]

        assert all(3.0 <= d <= 5.0 for d in delays)

    def test_jitter_spreads_retries_of_the_same_attempt(self) -> None:
        delays = {exponential_backoff(4) for _ in range(50)}

        assert len(delays) > 10
        assert min(delays) < 8.0 < max(delays)

    @pytest.mark.parametrize("attempt", [13, 20, 64, 1000, 10**9])
    def test_is_capped_at_an_hour_plus_jitter(self, attempt: int) -> None:
        delays = [exponential_backoff(attempt) for _ in range(50)]

        assert all(0.75 * BACKOFF_CAP <= d <= 1.25 * BACKOFF_CAP for d in delays)
        assert BACKOFF_CAP == 3600.0

    @pytest.mark.parametrize("attempt", [0, -3])
    def test_attempts_below_one_wait_about_a_second(self, attempt: int) -> None:
        assert 0.75 <= exponential_backoff(attempt) <= 1.25
