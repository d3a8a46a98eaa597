"""Retry with exponential backoff, jitter, a total deadline and server hints.

Why one implementation: the client (HTTP), the agent (LLM calls and tools) and the tracker
(remote store) all retry. Doing it once means one place decides how ``Retry-After`` is read and
capped, how a deadline bounds the total time, and how tests replace the clock and the sleep so
that they run instantly.

The caller supplies ``classify(exc, result) -> RetryDecision``: the only part that differs
between an HTTP 503, a Gemini quota error and a flaky tool.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from .cancel import Cancelled

__all__ = [
    "GIVE_UP",
    "RETRY",
    "RetryDecision",
    "RetryPolicy",
    "RetryState",
    "parse_retry_after",
    "retry_async",
    "retry_on",
    "retry_on_exception",
    "retry_sync",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What ``classify`` says about one outcome.

    Attributes:
        retry: try again (True) or give up and hand the outcome to the caller (False).
        delay: the server's own hint in seconds (e.g. from ``Retry-After``); used instead of the
            computed backoff, capped by ``RetryPolicy.max_retry_after``.
    """

    retry: bool
    delay: float | None = None


RETRY = RetryDecision(True)
GIVE_UP = RetryDecision(False)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes:
        max_attempts: total attempts including the first (1 = never retry).
        initial_delay: backoff after the first failure, seconds.
        max_delay: cap on any computed backoff, seconds.
        multiplier: growth factor between consecutive backoffs.
        jitter: relative randomisation, 0.25 = each delay is drawn from +-25% of its base, so
            many clients failing together do not retry in lockstep.
        deadline: total seconds from the first attempt after which no retry is started (a retry
            whose delay would end past the deadline is not started either); None = no deadline.
        max_retry_after: cap on a server-provided delay, so a hostile or buggy ``Retry-After``
            cannot park the caller for hours.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.25
    deadline: float | None = None
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (self.multiplier >= 1 and math.isfinite(self.multiplier)):
            raise ValueError(f"multiplier must be a finite number >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")
        if self.deadline is not None and not self.deadline >= 0:
            raise ValueError(f"deadline must be >= 0 or None, got {self.deadline}")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The computed delay after failed attempt number ``attempt`` (1-based), with jitter.

        Args:
            attempt: which attempt just failed (1 for the first).
            rng: source of jitter; defaults to the module's ``random``.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        try:
            base = self.initial_delay * self.multiplier ** (attempt - 1)
        except OverflowError:
            base = self.max_delay
        base = min(base, self.max_delay)
        if self.jitter:
            r = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
            base = min(base * r, self.max_delay)
        return max(base, 0.0)

    def delay_for(
        self, attempt: int, hint: float | None = None, rng: random.Random | None = None
    ) -> float:
        """The delay to sleep before the next attempt: the server hint (capped) if any, else the
        computed backoff."""
        if hint is not None and math.isfinite(hint):
            return min(max(hint, 0.0), self.max_retry_after)
        return self.backoff(attempt, rng)

    def with_(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed (validated again)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return RetryPolicy(**values)


@dataclass(frozen=True, slots=True)
class RetryState:
    """Passed to ``on_retry`` just before sleeping: what failed and what happens next.

    Attributes:
        attempt: the attempt that just failed (1-based).
        delay: seconds about to be slept.
        exception: the exception of that attempt, or None if a result was classified as retry.
        result: the result of that attempt (None if it raised).
        elapsed: seconds since the first attempt started, by the injected clock.
    """

    attempt: int
    delay: float
    exception: BaseException | None
    result: Any = None
    elapsed: float = 0.0


Classify = Callable[[BaseException | None, Any], RetryDecision]


def retry_on_exception(exc: BaseException | None, result: Any) -> RetryDecision:
    """Default classifier: retry any ``Exception`` (except ``Cancelled``), accept any result."""
    if exc is not None and isinstance(exc, Exception) and not isinstance(exc, Cancelled):
        return RETRY
    return GIVE_UP


def retry_on(*exc_types: type[BaseException]) -> Classify:
    """A classifier that retries exactly the given exception types and accepts any result."""

    def classify(exc: BaseException | None, result: Any) -> RetryDecision:
        return RETRY if exc is not None and isinstance(exc, exc_types) else GIVE_UP

    return classify


_MAX_HEADER_SECONDS = 10 * 365 * 24 * 3600.0


def parse_retry_after(
    headers: Mapping[str, str],
    *,
    now: float | datetime | None = None,
    cap: float | None = None,
) -> float | None:
    """Read a server's requested delay from response headers, in seconds.

    Understands ``retry-after-ms`` (milliseconds, preferred when present: OpenAI-style servers
    send it with finer resolution), and ``Retry-After`` as delta-seconds or an HTTP-date.
    Header names are matched case-insensitively, so plain dicts work as well as httpx headers.

    Args:
        headers: response headers.
        now: the current time (epoch seconds or aware datetime) for HTTP-dates; defaults to now.
        cap: upper bound for the returned value.

    Returns:
        Seconds (>= 0), or None when no usable header is present (garbage is ignored, not raised).
    """
    ms_value: str | None = None
    value: str | None = None
    for key, raw in headers.items():
        lk = key.lower()
        if lk == "retry-after-ms":
            ms_value = raw
        elif lk == "retry-after":
            value = raw
    seconds: float | None = None
    if ms_value is not None:
        try:
            ms = float(ms_value.strip())
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            seconds = ms / 1000.0
    if seconds is None and value is not None:
        text = value.strip()
        try:
            secs = float(text)
        except ValueError:
            secs = math.nan
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                if now is None:
                    now_ts = time.time()
                elif isinstance(now, datetime):
                    now_ts = (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()
                else:
                    now_ts = float(now)
                secs = max(when.timestamp() - now_ts, 0.0)
        if math.isfinite(secs) and secs >= 0:
            seconds = min(secs, _MAX_HEADER_SECONDS)
    if seconds is not None and cap is not None:
        seconds = min(seconds, cap)
    return seconds


async def retry_async(
    fn: Callable[[], Awaitable[_T]],
    policy: RetryPolicy | None = None,
    *,
    classify: Classify = retry_on_exception,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[RetryState], Any] | None = None,
    rng: random.Random | None = None,
) -> _T:
    """Call ``fn()`` until ``classify`` accepts the outcome or the policy runs out.

    ``asyncio.CancelledError`` and ``Cancelled`` always propagate at once: a cancelled caller
    is never retried.

    Args:
        fn: zero-argument coroutine function, called once per attempt.
        policy: attempts, backoff and deadline (default ``RetryPolicy()``).
        classify: ``(exception or None, result) -> RetryDecision``.
        sleep: awaitable sleep (inject a fake in tests).
        clock: monotonic clock used for the deadline (inject a fake in tests).
        on_retry: called with a ``RetryState`` before each sleep (logging, metrics, events);
            may be a coroutine function.
        rng: jitter source (seed it for reproducible tests).

    Returns:
        The accepted result, or the last result when retries ran out.

    Raises:
        The last attempt's exception when it was not accepted and retries ran out.
    """
    policy = policy or RetryPolicy()
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        exc: BaseException | None = None
        result: Any = None
        try:
            result = await fn()
        except (asyncio.CancelledError, Cancelled):
            raise
        except Exception as e:
            exc = e
        delay = _next_delay(policy, classify, exc, result, attempt, clock() - start, rng)
        if delay is None:
            if exc is not None:
                raise exc
            return result  # type: ignore[no-any-return]
        if on_retry is not None:
            ret = on_retry(RetryState(attempt, delay, exc, result, clock() - start))
            if asyncio.iscoroutine(ret):
                await ret
        del exc
        await sleep(delay)


def retry_sync(
    fn: Callable[[], _T],
    policy: RetryPolicy | None = None,
    *,
    classify: Classify = retry_on_exception,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[RetryState], Any] | None = None,
    rng: random.Random | None = None,
) -> _T:
    """The synchronous twin of ``retry_async``: same arguments, ``time.sleep`` by default."""
    policy = policy or RetryPolicy()
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        exc: BaseException | None = None
        result: Any = None
        try:
            result = fn()
        except Cancelled:
            raise
        except Exception as e:
            exc = e
        delay = _next_delay(policy, classify, exc, result, attempt, clock() - start, rng)
        if delay is None:
            if exc is not None:
                raise exc
            return result  # type: ignore[no-any-return]
        if on_retry is not None:
            on_retry(RetryState(attempt, delay, exc, result, clock() - start))
        del exc
        sleep(delay)


def _next_delay(
    policy: RetryPolicy,
    classify: Classify,
    exc: BaseException | None,
    result: Any,
    attempt: int,
    elapsed: float,
    rng: random.Random | None,
) -> float | None:
    """The delay before the next attempt, or None to stop and hand over this outcome."""
    decision = classify(exc, result)
    if not decision.retry or attempt >= policy.max_attempts:
        return None
    delay = policy.delay_for(attempt, decision.delay, rng)
    if policy.deadline is not None and elapsed + delay > policy.deadline:
        return None
    return delay
