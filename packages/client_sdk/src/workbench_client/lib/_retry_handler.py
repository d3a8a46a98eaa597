"""``RetryHandler``: the third retry layer, for a whole batch of concurrent calls.

The HTTP layer retries one request; this layer bounds and watches many calls at once:

- a connection limit (a semaphore), so 1,000 submitted futures do not open 1,000 sockets;
- a progress timeout: when no call has finished for ``progress_timeout`` seconds, waiting calls
  raise ``ProgressTimeoutError`` instead of hanging on a stalled server;
- retry classification for whole calls (``workbench_core.retry`` with a classify hook), after the
  HTTP layer has given up. Mutating calls must carry a fixed Idempotency-Key across these
  retries, which the high-level clients do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from workbench_core.retry import RetryDecision, RetryPolicy, retry_async

from .._errors import ProgressTimeoutError, is_retryable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryConfig:
    """Settings of a ``RetryHandler``.

    Attributes:
        max_connections: calls in flight at once; the rest wait their turn.
        progress_timeout: seconds without any call finishing before waiting calls give up.
        policy: backoff for whole-call retries (the HTTP layer already retried each request).
        retryable: the classification: which errors are worth another whole-call attempt.
    """

    max_connections: int = 64
    progress_timeout: float = 600.0
    policy: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=3, initial_delay=1.0, max_delay=10.0)
    )
    retryable: Callable[[BaseException], bool] = is_retryable

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if not self.progress_timeout > 0:
            raise ValueError("progress_timeout must be > 0")


class RetryHandler:
    """Runs calls under a connection limit, whole-call retries and a progress watchdog.

    One handler is shared by every client a ``ServiceClient`` creates, so the limit holds for
    all their calls together. It must be used from one event loop (the client's loop thread).
    """

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or RetryConfig()
        self._sleep = sleep
        self._clock = clock
        self._semaphore: asyncio.Semaphore | None = None
        self._last_progress = clock()
        self.in_flight = 0
        self.peak_in_flight = 0

    def _classify(self, exc: BaseException | None, result: Any) -> RetryDecision:
        if exc is not None and self.config.retryable(exc):
            return RetryDecision(True, getattr(exc, "retry_after", None))
        return RetryDecision(False)

    def _note_progress(self) -> None:
        self._last_progress = self._clock()

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.config.max_connections)
        async with self._semaphore:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                return await retry_async(
                    fn, self.config.policy, classify=self._classify, sleep=self._sleep
                )
            finally:
                self.in_flight -= 1
                self._note_progress()

    async def execute(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` (a zero-argument coroutine function) under the handler's rules.

        Raises:
            ProgressTimeoutError: no call of this handler finished for ``progress_timeout`` s.
            Whatever ``fn`` raised, once retries are exhausted or the error is not retryable.
        """
        started = self._clock()
        task = asyncio.ensure_future(self._run(fn))
        timeout = self.config.progress_timeout
        interval = min(1.0, timeout / 4)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=interval)
                if done:
                    return task.result()
                idle = self._clock() - max(self._last_progress, started)
                if idle >= timeout:
                    task.cancel()
                    raise ProgressTimeoutError(
                        f"no call made progress for {idle:.1f} s (progress_timeout={timeout} s); "
                        "the server may be stalled or unreachable"
                    )
        except asyncio.CancelledError:
            task.cancel()
            raise


__all__ = ["RetryConfig", "RetryHandler"]
