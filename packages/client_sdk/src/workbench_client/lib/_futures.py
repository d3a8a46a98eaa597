"""``APIFuture``: the handle every high-level call returns, usable from sync and async code.

The work runs on the client's loop thread; the future wraps that task's
``concurrent.futures.Future`` so a sync caller blocks on ``result(timeout)`` and an async caller
(on any loop) awaits ``result_async()`` or the future itself without blocking its loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from workbench_core.aio import LoopThread

from .._errors import SyncInAsyncContextError

T = TypeVar("T")


class APIFuture(Generic[T]):
    """The pending result of one call.

    Args:
        future: the loop-thread task's future.
        loop_thread: the loop it runs on (to refuse a blocking ``result()`` there).
    """

    def __init__(
        self, future: concurrent.futures.Future[T], loop_thread: LoopThread | None = None
    ) -> None:
        self._future = future
        self._loop_thread = loop_thread

    def result(self, timeout: float | None = None) -> T:
        """Block until the call finishes and return its result (or raise its error).

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the call keeps running).
            SyncInAsyncContextError: called on the client's own loop thread (would deadlock).
        """
        if self._loop_thread is not None and self._loop_thread.in_loop_thread():
            raise SyncInAsyncContextError(
                "APIFuture.result() called on the client's event-loop thread, where it would "
                "deadlock; use 'await future' or 'await future.result_async()'"
            )
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the call did not finish within {timeout} s") from None

    async def result_async(self, timeout: float | None = None) -> T:
        """Await the result from any event loop without blocking it.

        Cancelling the awaiting task does not cancel the call itself (it may be a training step
        that must be applied in order); use ``cancel()`` for that.
        """
        wrapped = asyncio.shield(asyncio.wrap_future(self._future))
        if timeout is None:
            return await wrapped
        try:
            return await asyncio.wait_for(wrapped, timeout)
        except TimeoutError:
            raise TimeoutError(f"the call did not finish within {timeout} s") from None

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    def done(self) -> bool:
        """Whether the call has finished (successfully or not)."""
        return self._future.done()

    def cancel(self) -> bool:
        """Cancel the call if it has not finished."""
        return self._future.cancel()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The call's exception, or None when it succeeded (blocks like ``result``)."""
        return self._future.exception(timeout)

    def add_done_callback(self, fn: Callable[[APIFuture[T]], Any]) -> None:
        """Call ``fn(self)`` when the call finishes (on the loop thread)."""
        self._future.add_done_callback(lambda _f: fn(self))

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<APIFuture {state}>"


__all__ = ["APIFuture"]
