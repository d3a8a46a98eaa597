"""Cooperative cancellation that crosses threads and asyncio tasks.

Why a token and not just ``task.cancel()``: the work we cancel (an agent run, a serving
request whose client went away, a tool in a worker thread) spans threads, event loops and
blocking library calls. ``asyncio`` cancellation only reaches an awaiting coroutine on its own
loop; a ``CancelToken`` is a single thread-safe flag that any of them can poll with
``checkpoint()``, await with ``wait()``, or have forwarded to a linked task.

Tree of errors::

    Exception
     └── Cancelled(reason)   raised by CancelToken.checkpoint()
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CancelToken", "Cancelled"]

_T = TypeVar("_T")


class Cancelled(Exception):
    """Raised at a checkpoint of a cancelled token; carries the reason given to ``cancel()``.

    It is an ``Exception`` (not ``asyncio.CancelledError``) on purpose: code that catches it can
    tell a deliberate, reasoned cancellation from the event loop tearing a task down.
    """

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop``: directly when already on it, else thread-safely."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
        return
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        # The loop is closed: whatever waited on it is gone, nothing left to wake.
        pass


class CancelToken:
    """A thread-safe, one-shot cancellation flag with a reason.

    Cancel it from any thread; the first ``cancel()`` wins and later calls are no-ops. Everything
    registered on the token is then notified exactly once: ``on_cancel`` callbacks, coroutines in
    ``wait()``, linked asyncio tasks (cancelled on their own loop) and child tokens.

    Args:
        parent: when given, this token is cancelled (with the parent's reason) whenever the parent
            is. Prefer ``parent.child()``.
    """

    __slots__ = ("__weakref__", "_callbacks", "_children", "_event", "_lock", "_reason", "_waiters")

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._event = threading.Event()
        self._callbacks: list[Callable[[str], Any]] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        # Weak so that a long-lived parent does not keep every finished child alive.
        self._children: weakref.WeakSet[CancelToken] = weakref.WeakSet()
        if parent is not None:
            parent._adopt(self)

    def __repr__(self) -> str:
        state = f"cancelled reason={self._reason!r}" if self.cancelled else "active"
        return f"<CancelToken {state}>"

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` has been called (on this token or an ancestor)."""
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """The reason given to the winning ``cancel()`` call, or None while active."""
        return self._reason

    def cancel(self, reason: str = "cancelled") -> bool:
        """Cancel the token. Safe from any thread.

        Args:
            reason: why; carried by the ``Cancelled`` raised at checkpoints and by linked tasks'
                cancel message.

        Returns:
            True if this call cancelled the token, False if it was already cancelled.
        """
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            callbacks, self._callbacks = self._callbacks, []
            waiters, self._waiters = self._waiters, []
            children = list(self._children)
            self._children = weakref.WeakSet()
        self._event.set()
        for loop, fut in waiters:
            _call_in_loop(loop, _resolve, fut)
        for child in children:
            child.cancel(reason)
        errors: list[BaseException] = []
        for cb in callbacks:
            try:
                cb(reason)
            except Exception as exc:  # one bad callback must not stop the others
                errors.append(exc)
        if errors:
            raise errors[0]
        return True

    def checkpoint(self) -> None:
        """Raise ``Cancelled(reason)`` if the token is cancelled; otherwise return at once.

        Raises:
            Cancelled: the token was cancelled.
        """
        reason = self._reason
        if reason is not None:
            raise Cancelled(reason)

    def raise_if_cancelled(self) -> None:
        """Alias of ``checkpoint()`` for readers who prefer the explicit name."""
        self.checkpoint()

    async def wait(self) -> str:
        """Wait until the token is cancelled, from any thread.

        Returns:
            The cancellation reason.
        """
        if self._reason is not None:
            return self._reason
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._lock:
            if self._reason is None:
                self._waiters.append(entry)
            else:
                fut.set_result(None)
        try:
            await fut
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        assert self._reason is not None
        return self._reason

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block the calling thread until cancelled or ``timeout`` seconds pass.

        Returns:
            True if the token is cancelled.
        """
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``callback(reason)`` once when the token is cancelled.

        If the token is already cancelled the callback runs immediately, in this thread.
        Otherwise it runs in whichever thread calls ``cancel()``: keep it short and thread-safe.

        Returns:
            A function that unregisters the callback (a no-op once it has run).
        """
        with self._lock:
            reason = self._reason
            if reason is None:
                self._callbacks.append(callback)
        if reason is not None:
            callback(reason)

        def remove() -> None:
            with self._lock:
                try:
                    self._callbacks.remove(callback)
                except ValueError:
                    pass

        return remove

    def link(self, task: asyncio.Future[_T]) -> asyncio.Future[_T]:
        """Cancel ``task`` (on its own loop, with the reason as message) when this token is.

        The link is dropped when the task finishes, so linking many short tasks leaks nothing.

        Returns:
            The task, for chaining.
        """
        loop = task.get_loop()

        def cancel_task(reason: str) -> None:
            _call_in_loop(loop, task.cancel, reason)

        remove = self.on_cancel(cancel_task)
        task.add_done_callback(lambda _t: remove())
        return task

    def child(self) -> CancelToken:
        """A new token cancelled together with this one (but not the other way round)."""
        return CancelToken(parent=self)

    def _adopt(self, child: CancelToken) -> None:
        with self._lock:
            reason = self._reason
            if reason is None:
                self._children.add(child)
        if reason is not None:
            child.cancel(reason)
