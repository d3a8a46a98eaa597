"""One background event-loop thread that runs coroutines for synchronous callers.

Why: the client's sync API and the tracker SDK are thin twins of async code. Calling
``asyncio.run`` per call would build and tear down a loop (and every connection pool bound to it)
each time, and fails outright inside a running loop (Jupyter). A single long-lived loop in a
daemon thread keeps pools warm and lets sync code block on a ``concurrent.futures.Future``.

Tree of errors::

    RuntimeError
     └── LoopThreadError   run()/submit() misuse: from inside the loop itself, or after stop()
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "LoopThreadError", "get_loop_thread"]

_T = TypeVar("_T")


class LoopThreadError(RuntimeError):
    """Raised instead of deadlocking: ``run()`` from inside the loop it would wait on, or use
    of a stopped ``LoopThread``."""


class LoopThread:
    """A daemon thread running one asyncio event loop, started on first use.

    Args:
        name: the thread's name (shows up in debuggers and ``threading.enumerate()``).
    """

    def __init__(self, name: str = "workbench-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._pid = os.getpid()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else ("running" if self.is_running else "idle")
        return f"<LoopThread {self._name} {state}>"

    @property
    def is_running(self) -> bool:
        """Whether the thread and its loop are alive (in this process)."""
        return (
            self._thread is not None
            and self._pid == os.getpid()
            and self._thread.is_alive()
            and not self._stopped
        )

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (starting the thread if needed)."""
        return self.start()

    @property
    def thread(self) -> threading.Thread | None:
        """The thread running the loop, or None before the first start."""
        return self._thread

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the thread if it is not running yet; thread-safe and idempotent.

        Returns:
            The running loop.

        Raises:
            LoopThreadError: the loop thread was stopped.
        """
        with self._lock:
            if self._stopped:
                raise LoopThreadError(f"{self._name} was stopped; create a new LoopThread")
            if self._pid != os.getpid():
                # A forked child inherits this object but not the thread: the inherited loop
                # would never run what we submit. Start afresh in this process.
                self._pid = os.getpid()
                self._loop = None
                self._thread = None
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def runner() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    try:
                        _cancel_all(loop)
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    finally:
                        loop.close()

            thread = threading.Thread(target=runner, name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop = loop
            self._thread = thread
            return loop

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return (
            self._thread is not None
            and self._pid == os.getpid()
            and threading.current_thread() is self._thread
        )

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Schedule ``coro`` on the loop; never blocks.

        Returns:
            A future that resolves with the coroutine's result; cancelling it cancels the task.

        Raises:
            LoopThreadError: the loop thread was stopped.
        """
        try:
            loop = self.start()
        except LoopThreadError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the loop and block the calling thread for its result.

        Args:
            coro: the coroutine.
            timeout: seconds to wait; on expiry the task is cancelled and ``TimeoutError`` raised.

        Raises:
            LoopThreadError: called from the loop's own thread (it would wait on itself forever).
            TimeoutError: the timeout passed.
        """
        if self.in_loop_thread():
            coro.close()
            raise LoopThreadError(
                f"run() called from inside {self._name}'s own event loop; await the coroutine "
                "instead (blocking here would deadlock)"
            )
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"coroutine did not finish within {timeout} s") from None
        except BaseException:
            # KeyboardInterrupt while blocked: do not leave the task running behind our back.
            fut.cancel()
            raise

    def stop(self, timeout: float | None = 5.0) -> None:
        """Cancel pending tasks, stop the loop and join the thread. Idempotent.

        Args:
            timeout: seconds to wait for the thread to finish.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._pid != os.getpid():
            return
        if threading.current_thread() is thread:
            loop.stop()
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            return
        thread.join(timeout)

    def __enter__(self) -> LoopThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel("loop thread stopping")
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


_default: LoopThread | None = None
_default_lock = threading.Lock()
_atexit_registered = False


def get_loop_thread() -> LoopThread:
    """The process-wide default ``LoopThread``: created and started lazily, stopped at exit.

    Thread-safe: concurrent first calls get the same instance.
    """
    global _default, _atexit_registered
    current = _default
    if current is not None and not current._stopped:
        return current
    with _default_lock:
        if _default is None or _default._stopped:
            _default = LoopThread("workbench-default-loop")
            _default.start()
            if not _atexit_registered:
                atexit.register(_stop_default)
                _atexit_registered = True
        return _default


def _stop_default() -> None:
    with _default_lock:
        current = _default
    if current is not None:
        current.stop(timeout=2.0)
