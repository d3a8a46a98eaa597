"""Turn a cancelled ``CancelToken`` into prompt cancellation of the awaiting task.

Why: a token is polled at checkpoints, but a run spends most of its time awaiting (the next model
delta, a tool, an HTTP response). Inside ``cancel_scope(token)`` a cancel interrupts that await at
once: the pending HTTP request is closed (the model server then drops the work) and the scope
re-raises it as ``Cancelled(reason)``. Scopes for the same token nest as one, so the task is
cancelled once and ``uncancel``-ed once.

A class rather than ``@asynccontextmanager``: the tool runner enters one scope per call, and a
plain object is several times cheaper than a generator-based context manager.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from types import TracebackType

from workbench_core.cancel import Cancelled, CancelToken

__all__ = ["cancel_scope"]

_active: ContextVar[CancelToken | None] = ContextVar("workbench_agent_cancel_scope", default=None)


class cancel_scope:
    """Cancel the current task when ``token`` is cancelled, raising ``Cancelled(reason)``.

    Raises:
        Cancelled: on entry if the token is already cancelled, or when it is cancelled inside.
    """

    __slots__ = ("_fired", "_live", "_loop", "_remove", "_reset", "_task", "_token")

    def __init__(self, token: CancelToken | None) -> None:
        self._token = token
        self._reset: Token[CancelToken | None] | None = None
        self._live = False
        self._fired = False

    async def __aenter__(self) -> None:
        token = self._token
        if token is None or _active.get() is token:
            self._token = None  # nested or absent: a pass-through
            return
        token.checkpoint()
        task = asyncio.current_task()
        assert task is not None, "cancel_scope needs a running task"
        self._task = task
        self._loop = task.get_loop()
        self._live = True
        self._remove = token.on_cancel(self._on_cancel)
        self._reset = _active.set(token)

    def _cancel_task(self, reason: str) -> None:
        if self._live and not self._task.done():
            self._fired = True
            self._task.cancel(reason)

    def _on_cancel(self, reason: str) -> None:
        try:
            same_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._cancel_task(reason)
            return
        try:
            self._loop.call_soon_threadsafe(self._cancel_task, reason)
        except RuntimeError:  # loop closed: nothing left to interrupt
            pass

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is None:
            return
        self._live = False
        if self._reset is not None:
            _active.reset(self._reset)
        self._remove()
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            if self._fired and token.cancelled:
                self._task.uncancel()
                raise Cancelled(token.reason or "cancelled") from None
