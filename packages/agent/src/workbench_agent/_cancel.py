"""Turn a cancelled ``CancelToken`` into prompt cancellation of the awaiting task.

Why: a token is polled at checkpoints, but a run spends most of its time awaiting (the next model
delta, a tool, an HTTP response). Inside ``cancel_scope(token)`` a cancel interrupts that await at
once: the pending HTTP request is closed (the model server then drops the work) and the scope
re-raises it as ``Cancelled(reason)``. Scopes for the same token nest as one, so the task is
cancelled once and ``uncancel``-ed once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from workbench_core.cancel import Cancelled, CancelToken

__all__ = ["cancel_scope"]

_active: ContextVar[CancelToken | None] = ContextVar("workbench_agent_cancel_scope", default=None)


@asynccontextmanager
async def cancel_scope(token: CancelToken | None) -> AsyncIterator[None]:
    """Cancel the current task when ``token`` is cancelled, raising ``Cancelled(reason)``.

    Raises:
        Cancelled: on entry if the token is already cancelled, or when it is cancelled inside.
    """
    if token is None or _active.get() is token:
        yield
        return
    token.checkpoint()
    task = asyncio.current_task()
    assert task is not None, "cancel_scope needs a running task"
    loop = asyncio.get_running_loop()
    live = True
    fired = False

    def cancel_task(reason: str) -> None:
        nonlocal fired
        if live and not task.done():
            fired = True
            task.cancel(reason)

    def on_cancel(reason: str) -> None:
        try:
            if asyncio.get_running_loop() is loop:
                cancel_task(reason)
                return
        except RuntimeError:
            pass
        try:
            loop.call_soon_threadsafe(cancel_task, reason)
        except RuntimeError:  # loop closed: nothing left to interrupt
            pass

    remove = token.on_cancel(on_cancel)
    reset = _active.set(token)
    try:
        yield
    except asyncio.CancelledError:
        if fired and token.cancelled:
            task.uncancel()
            raise Cancelled(token.reason or "cancelled") from None
        raise
    finally:
        live = False
        _active.reset(reset)
        remove()
