"""retry: backoff shape, Retry-After parsing, deadlines, classification, fake clock and sleep."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from workbench_core.cancel import Cancelled
from workbench_core.retry import (
    GIVE_UP,
    RETRY,
    RetryDecision,
    RetryPolicy,
    RetryState,
    parse_retry_after,
    retry_async,
    retry_on,
    retry_sync,
)


class FakeClock:
    """A clock that only moves when the fake sleep is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def flaky(failures: int, exc: type[Exception] = ConnectionError, value: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc(f"failure {calls['n']}")
        return value

    return fn, calls


def test_backoff_grows_by_multiplier_and_is_capped_without_jitter() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=3.0, jitter=0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_jitter_stays_within_the_stated_fraction_and_cap() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=3.0, jitter=0.25)
    rng = random.Random(7)
    first = [policy.backoff(1, rng) for _ in range(500)]
    assert min(first) >= 0.75 and max(first) <= 1.25
    assert len(set(first)) > 100  # actually randomised
    capped = [policy.backoff(10, rng) for _ in range(200)]
    assert max(capped) <= 3.0 and min(capped) >= 2.25


def test_backoff_of_huge_attempt_does_not_overflow() -> None:
    assert RetryPolicy(jitter=0, max_delay=8).backoff(100_000) == 8.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("initial_delay", -1.0),
        ("max_delay", float("inf")),
        ("multiplier", 0.5),
        ("jitter", 1.5),
        ("deadline", -2.0),
        ("max_retry_after", float("nan")),
    ],
)
def test_invalid_policy_is_rejected_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        kwargs: dict[str, Any] = {field: value}
        RetryPolicy(**kwargs)


def test_with_changes_fields_and_revalidates() -> None:
    p = RetryPolicy().with_(max_attempts=2)
    assert p.max_attempts == 2 and p.initial_delay == RetryPolicy().initial_delay
    with pytest.raises(ValueError, match="max_attempts"):
        p.with_(max_attempts=0)


def test_sync_retry_succeeds_after_transient_failures_with_expected_sleeps() -> None:
    clock = FakeClock()
    fn, calls = flaky(2)
    policy = RetryPolicy(initial_delay=1, multiplier=3, jitter=0)
    assert retry_sync(fn, policy, sleep=clock.sleep, clock=clock) == "ok"
    assert calls["n"] == 3
    assert clock.sleeps == [1, 3]


def test_sync_retry_reraises_last_exception_when_attempts_run_out() -> None:
    clock = FakeClock()
    fn, calls = flaky(10)
    with pytest.raises(ConnectionError, match="failure 3"):
        retry_sync(fn, RetryPolicy(max_attempts=3, jitter=0), sleep=clock.sleep, clock=clock)
    assert calls["n"] == 3
    assert len(clock.sleeps) == 2


def test_classifier_give_up_reraises_immediately() -> None:
    clock = FakeClock()
    fn, calls = flaky(5, exc=KeyError)
    with pytest.raises(KeyError):
        retry_sync(fn, classify=retry_on(ConnectionError), sleep=clock.sleep, clock=clock)
    assert calls["n"] == 1 and clock.sleeps == []


def test_result_classified_as_retry_is_retried_and_last_result_returned() -> None:
    clock = FakeClock()
    results = iter([503, 503, 503])

    def classify(exc: BaseException | None, result: object) -> RetryDecision:
        return RETRY if result == 503 else GIVE_UP

    got = retry_sync(
        lambda: next(results),
        RetryPolicy(max_attempts=3, jitter=0),
        classify=classify,
        sleep=clock.sleep,
        clock=clock,
    )
    assert got == 503
    assert len(clock.sleeps) == 2


def test_server_delay_hint_replaces_backoff_and_is_capped() -> None:
    clock = FakeClock()
    hints = iter([2.5, 1000.0])
    fn, _ = flaky(2)

    def classify(exc: BaseException | None, result: object) -> RetryDecision:
        return RetryDecision(True, next(hints)) if exc else GIVE_UP

    policy = RetryPolicy(initial_delay=0.1, jitter=0, max_retry_after=30)
    assert retry_sync(fn, policy, classify=classify, sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [2.5, 30]


def test_deadline_stops_retrying_before_a_sleep_would_cross_it() -> None:
    clock = FakeClock()
    fn, calls = flaky(100)
    policy = RetryPolicy(max_attempts=100, initial_delay=1, multiplier=2, jitter=0, deadline=10)
    with pytest.raises(ConnectionError):
        retry_sync(fn, policy, sleep=clock.sleep, clock=clock)
    # sleeps 1 + 2 + 4 = 7; the next (8) would end at 15 > 10.
    assert clock.sleeps == [1, 2, 4]
    assert calls["n"] == 4
    assert clock.now <= 10


def test_on_retry_sees_each_failure_before_sleeping() -> None:
    clock = FakeClock()
    fn, _ = flaky(2)
    seen: list[RetryState] = []
    retry_sync(
        fn,
        RetryPolicy(jitter=0, initial_delay=1),
        sleep=clock.sleep,
        clock=clock,
        on_retry=seen.append,
    )
    assert [s.attempt for s in seen] == [1, 2]
    assert [s.delay for s in seen] == [1, 2]
    assert all(isinstance(s.exception, ConnectionError) for s in seen)
    assert seen[1].elapsed == 1


def test_cancelled_is_never_retried() -> None:
    clock = FakeClock()
    fn, calls = flaky(5, exc=Cancelled)
    with pytest.raises(Cancelled):
        retry_sync(fn, sleep=clock.sleep, clock=clock)
    assert calls["n"] == 1


async def test_async_retry_with_fake_sleep_and_async_on_retry() -> None:
    clock = FakeClock()
    fn, calls = flaky(3)
    notes: list[int] = []

    async def afn() -> str:
        return fn()

    async def on_retry(state: RetryState) -> None:
        notes.append(state.attempt)

    policy = RetryPolicy(initial_delay=0.5, jitter=0)
    got = await retry_async(afn, policy, sleep=clock.asleep, clock=clock, on_retry=on_retry)
    assert got == "ok" and calls["n"] == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert notes == [1, 2, 3]


async def test_async_retry_propagates_task_cancellation_during_sleep() -> None:
    attempts = 0

    async def always_fails() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    task = asyncio.create_task(retry_async(always_fails, RetryPolicy(initial_delay=60, jitter=0)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == 1


def test_parse_retry_after_seconds_case_insensitive() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5


def test_parse_retry_after_ms_wins_over_seconds() -> None:
    assert parse_retry_after({"Retry-After": "7", "Retry-After-Ms": "250"}) == 0.25


def test_parse_retry_after_http_date_relative_to_now() -> None:
    now = datetime(2015, 10, 21, 7, 27, 50, tzinfo=UTC)
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert parse_retry_after(headers, now=now) == 10.0
    assert parse_retry_after(headers, now=now.timestamp()) == 10.0
    past = datetime(2016, 1, 1, tzinfo=UTC)
    assert parse_retry_after(headers, now=past) == 0.0


def test_parse_retry_after_caps_and_ignores_garbage() -> None:
    assert parse_retry_after({"Retry-After": "3600"}, cap=60) == 60
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "-5"}) is None
    assert parse_retry_after({"retry-after-ms": "nan", "Retry-After": "2"}) == 2.0
    assert parse_retry_after({}) is None


def test_parse_retry_after_bounds_absurd_values() -> None:
    value = parse_retry_after({"Retry-After": "1e300"})
    assert value is not None and value <= 10 * 365 * 24 * 3600
