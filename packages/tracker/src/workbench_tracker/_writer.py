"""The background writer: ``log()`` enqueues, one thread batches points into the store.

Why a thread: a training step must not wait on disk or network. ``log()`` only validates and
appends to an in-memory buffer (a few microseconds); the writer wakes when the buffer reaches
``batch_size`` points or every ``flush_interval`` seconds, and writes everything pending in one
``executemany`` transaction (or one HTTP request).

Backpressure: the buffer is bounded (``max_pending`` points). When the store falls behind
(a slow disk, a locked database, a remote server that is down) and the buffer is full,
``log()`` *blocks* until the writer has drained it. Memory therefore stays bounded, at the cost of
slowing the training loop to the store's speed — a deliberate choice over silently dropping
points.

Failure: the writer never dies silently. A failed batch is retried with backoff (the SQL store
already retries "database is locked" internally); when retries run out the error is recorded,
the points are kept for the next attempt, and the error is re-raised in the caller's thread at
the next ``flush()``/``finish()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench_tracker.store.base import MetricRow, Store

__all__ = ["MetricWriter", "WriterError"]


class WriterError(RuntimeError):
    """The writer thread could not write some points to the store."""


class MetricWriter:
    """Batches metric rows for one run into its store from a daemon thread.

    Args:
        store: where the points go.
        run_id: the run they belong to.
        flush_interval: the longest a point waits in memory before being written (seconds).
        batch_size: write as soon as this many points are pending.
        max_pending: the buffer bound; ``add`` blocks beyond it (backpressure).
        retries: attempts per batch before the error is recorded.
        on_idle: called from the writer thread after each write cycle (persists the summary,
            keeps the run's heartbeat).
        idle_interval: call ``on_idle`` at least this often even while no flush is due (a run
            with a long ``flush_interval`` still needs its heartbeat); default: only per cycle.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 50_000,
        max_pending: int = 500_000,
        retries: int = 5,
        on_idle: Callable[[], None] | None = None,
        idle_interval: float | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retries = retries
        self.on_idle = on_idle
        self.idle_interval = idle_interval
        self._buf: list[MetricRow] = []
        self._cond = threading.Condition()
        self._added = 0  # points ever enqueued
        self._written = 0  # points durably written
        self._flush_wanted = False
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._guarded_loop, name=f"workbench-tracker-writer-{run_id}", daemon=True
        )
        self._thread.start()

    @property
    def pending(self) -> int:
        """Points enqueued but not yet written."""
        return self._added - self._written

    def add(self, rows: list[MetricRow]) -> None:
        """Enqueue rows; blocks while the buffer is full (backpressure)."""
        cond = self._cond
        with cond:
            if self._added - self._written >= self.max_pending:
                if self._closing:
                    raise WriterError("writer is closed")
                cond.notify_all()
                while self._added - self._written >= self.max_pending and self._error is None:
                    if not self._thread.is_alive():
                        raise WriterError("writer thread is not running; the buffer cannot drain")
                    cond.wait(0.5)
                if self._error is not None:
                    self._raise_error()
            self._buf.extend(rows)
            self._added += len(rows)
            if len(self._buf) >= self.batch_size:
                cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every point enqueued so far is written; re-raise a writer error."""
        with self._cond:
            target = self._added
            self._flush_wanted = True
            self._cond.notify_all()
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._written < target:
                if self._error is not None:
                    self._raise_error()
                if not self._thread.is_alive():
                    raise WriterError("writer thread is not running")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"flush: {target - self._written} points still pending")
                self._cond.wait(0.5 if remaining is None else min(0.5, remaining))
            if self._error is not None:
                self._raise_error()

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the thread."""
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(timeout=5)

    def _raise_error(self) -> None:
        err = self._error
        self._error = None
        raise WriterError(f"tracker writer failed: {err!r}") from err

    def _guarded_loop(self) -> None:
        """The thread's body: should the loop itself ever break, say so loudly and hand the
        error to the caller's thread instead of ending quietly with points in memory."""
        try:
            self._loop()
        except BaseException as exc:
            import sys
            import traceback

            print(
                f"workbench-tracker: writer for run {self.run_id} stopped: {exc!r}; "
                f"{self.pending} points not written",
                file=sys.stderr,
            )
            traceback.print_exc(file=sys.stderr)
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _loop(self) -> None:
        cond = self._cond
        next_flush = time.monotonic() + self.flush_interval
        while True:
            with cond:
                wake = next_flush
                if self.idle_interval is not None:
                    wake = min(wake, time.monotonic() + self.idle_interval)
                while (
                    len(self._buf) < self.batch_size
                    and not self._flush_wanted
                    and not self._closing
                    and (self._added - self._written) < self.max_pending
                ):
                    remaining = wake - time.monotonic()
                    if remaining <= 0:
                        break
                    cond.wait(remaining)
                now = time.monotonic()
                due = (
                    now >= next_flush
                    or len(self._buf) >= self.batch_size
                    or self._flush_wanted
                    or self._closing
                    or (self._added - self._written) >= self.max_pending
                )
                if due:
                    batch = self._buf
                    self._buf = []
                    self._flush_wanted = False
                    next_flush = now + self.flush_interval
                else:  # woken only for on_idle: points keep waiting for their flush
                    batch = []
                closing = self._closing
            if batch:
                self._write(batch)
            if self.on_idle is not None:
                try:
                    self.on_idle()
                except Exception as exc:  # recorded, surfaced at flush/finish
                    with cond:
                        self._error = exc
                        cond.notify_all()
            if closing:
                with cond:
                    if not self._buf:
                        return

    def _write(self, batch: list[MetricRow]) -> None:
        attempt = 0
        while True:
            try:
                self.store.log_metrics(self.run_id, batch)
            except Exception as exc:
                attempt += 1
                if attempt <= self.retries:
                    time.sleep(min(2.0, 0.05 * 2**attempt))
                    continue
                with self._cond:
                    # Keep the points: they go out with the next batch once the store recovers.
                    self._buf[:0] = batch
                    self._error = exc
                    self._cond.notify_all()
                time.sleep(self.flush_interval)
                return
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()
            return
