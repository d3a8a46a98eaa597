"""Dynamic batching: one ``BatchScheduler`` per model, one worker thread per device.

Requests wait in a bounded per-model queue. A collector task takes the oldest request, waits up to
``max_wait_ms`` for more with the same ``engine.batch_key`` (up to ``max_batch_size``), and hands
the batch to the device's worker thread, so the event loop never blocks on a model. While a batch
runs, new requests pile up and form the next, larger batch.

Guarantees the HTTP layer relies on:

- a full queue raises ``QueueFull`` (429 with ``Retry-After``), never waits unbounded;
- a request past its deadline raises ``DeadlineExceeded`` (504) and its work is dropped, or
  cancelled through its token if already running;
- a request whose ``CancelToken`` fired (client went away) is dropped before it runs;
- ``close()`` stops new work and finishes every queued and in-flight batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from workbench_core.cancel import CancelToken
from workbench_serving.engines.base import Engine

log = logging.getLogger("workbench_serving.scheduler")

T = TypeVar("T")

_DEADLINE = "deadline exceeded"


class SchedulerError(Exception):
    """Base of the scheduler's refusals."""


class QueueFull(SchedulerError):
    def __init__(self, model: str, retry_after: float) -> None:
        super().__init__(f"model {model!r} is at its queue limit; retry after {retry_after:.0f}s")
        self.retry_after = retry_after


class DeadlineExceeded(SchedulerError):
    pass


class RequestCancelled(SchedulerError):
    pass


class SchedulerClosed(SchedulerError):
    pass


class DeviceWorker:
    """The one thread that owns a device: loads and runs every engine placed on it.

    A single thread per device serialises kernels (no contention between models' batches) and
    keeps CUDA context use simple.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"device-{device}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


@dataclass
class _Entry:
    item: Any
    key: Hashable
    future: asyncio.Future[Any]
    token: CancelToken
    deadline: float | None
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class SchedulerStats:
    """Counters the tests and ``/metrics`` read."""

    batches: int = 0
    items: int = 0
    dropped_cancelled: int = 0
    dropped_deadline: int = 0
    rejected_full: int = 0
    max_batch_seen: int = 0
    busy_seconds: float = 0.0


BatchObserver = Callable[[str, int, float], None]


class BatchScheduler:
    """Queue, batch and run one engine's work on its device worker."""

    def __init__(
        self,
        engine: Engine[Any, Any],
        worker: DeviceWorker,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 5.0,
        max_queue_size: int = 256,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.engine = engine
        self.name = engine.name
        self.worker = worker
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_size = max_queue_size
        self.stats = SchedulerStats()
        self._on_batch = on_batch
        self._pending: deque[_Entry] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._inflight_batch: list[_Entry] = []
        self._avg_batch_s = 0.05

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._collector(), name=f"scheduler-{self.name}"
            )

    async def close(self, grace_s: float = 30.0) -> None:
        """Refuse new work, finish what is queued and in flight, then stop the collector."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace_s)
            except TimeoutError:
                self._task.cancel()
            self._task = None
        for entry in self._pending:
            if not entry.future.done():
                entry.future.set_exception(SchedulerClosed("server is shutting down"))
        self._pending.clear()

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def inflight_entries(self) -> list[_Entry]:
        """Entries handed to the device worker and not finished yet."""
        return list(self._inflight_batch)

    # ------------------------------------------------------------------ submit

    async def submit(
        self,
        item: Any,
        *,
        token: CancelToken | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Queue ``item``, wait for its result.

        Raises:
            QueueFull: the queue is at ``max_queue_size``.
            DeadlineExceeded: no result within ``timeout`` seconds (the work is dropped).
            RequestCancelled: ``token`` fired before the item ran.
            SchedulerClosed: the server is shutting down.
            BaseException: whatever the engine returned for this item.
        """
        if self._closing:
            raise SchedulerClosed("server is shutting down")
        if len(self._pending) >= self.max_queue_size:
            self.stats.rejected_full += 1
            raise QueueFull(self.name, self._retry_after())
        token = token or CancelToken()
        if hasattr(item, "cancel") and getattr(item, "cancel", None) is None:
            item.cancel = token
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout if timeout is not None else None
        entry = _Entry(item, self.engine.batch_key(item), loop.create_future(), token, deadline)
        self._pending.append(entry)
        self._wakeup.set()
        try:
            if timeout is None:
                return await asyncio.shield(entry.future)
            return await asyncio.wait_for(asyncio.shield(entry.future), timeout=timeout)
        except TimeoutError:
            token.cancel(_DEADLINE)
            entry.future.cancel()
            self.stats.dropped_deadline += 1
            raise DeadlineExceeded(
                f"model {self.name!r} gave no result within {timeout:.1f}s"
            ) from None
        except asyncio.CancelledError:
            # The awaiting task went away (client disconnect in a streaming handler): drop it.
            token.cancel("request task cancelled")
            entry.future.cancel()
            raise

    def _retry_after(self) -> float:
        batches_ahead = max(1, len(self._pending) // max(1, self.max_batch_size))
        return max(1.0, round(batches_ahead * self._avg_batch_s + 0.5))

    # ------------------------------------------------------------------ collector

    def _take_batch(self) -> list[_Entry]:
        """Oldest live entry plus up to ``max_batch_size - 1`` more with the same key."""
        now = time.monotonic()
        while self._pending:
            head = self._pending[0]
            if self._is_dead(head, now):
                self._pending.popleft()
                continue
            break
        if not self._pending:
            return []
        key = self._pending[0].key
        batch: list[_Entry] = []
        keep: deque[_Entry] = deque()
        while self._pending:
            entry = self._pending.popleft()
            if self._is_dead(entry, now):
                continue
            if entry.key == key and len(batch) < self.max_batch_size:
                batch.append(entry)
            else:
                keep.append(entry)
        self._pending = keep
        return batch

    def _is_dead(self, entry: _Entry, now: float) -> bool:
        if entry.future.done():
            return True
        if entry.token.cancelled:
            self.stats.dropped_cancelled += 1
            entry.future.set_exception(RequestCancelled(entry.token.reason or "cancelled"))
            return True
        if entry.deadline is not None and now >= entry.deadline:
            self.stats.dropped_deadline += 1
            entry.future.set_exception(DeadlineExceeded("deadline passed while queued"))
            return True
        return False

    def _count_same_key(self) -> int:
        if not self._pending:
            return 0
        key = self._pending[0].key
        return sum(1 for e in self._pending if e.key == key)

    async def _collector(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Give stragglers max_wait to join, unless the batch is already full.
            if self.max_wait_s > 0 and not self._closing:
                waited_until = time.monotonic() + self.max_wait_s
                while self._count_same_key() < self.max_batch_size:
                    remaining = waited_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
                    except TimeoutError:
                        break
            batch = self._take_batch()
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Entry]) -> None:
        started = time.monotonic()

        def work() -> tuple[list[_Entry], list[Any]]:
            # Checked again in the worker: the device may have been busy with another model.
            live = [e for e in batch if not e.token.cancelled and not e.future.done()]
            if not live:
                return [], []
            return live, self.engine.run_batch([e.item for e in live])

        self._inflight_batch = batch
        try:
            live, results = await self.worker.run(work)
        except BaseException as exc:  # an engine crash fails the batch, never the collector
            log.exception("batch on %s failed", self.name)
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        finally:
            self._inflight_batch = []
        elapsed = time.monotonic() - started
        self._avg_batch_s = 0.8 * self._avg_batch_s + 0.2 * elapsed
        live_ids = {id(e) for e in live}
        for entry in batch:
            if id(entry) in live_ids:
                continue
            if entry.token.reason != _DEADLINE:  # deadline drops are counted by submit()
                self.stats.dropped_cancelled += 1  # never ran: its client left while it waited
            if not entry.future.done():
                entry.future.set_exception(RequestCancelled(entry.token.reason or "cancelled"))
        if len(results) != len(live):
            err = RuntimeError(
                f"engine {self.name} returned {len(results)} results for {len(live)}"
            )
            results = [err] * len(live)
        for entry, result in zip(live, results, strict=True):
            if entry.future.done():
                continue
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)
        if live:
            self.stats.batches += 1
            self.stats.items += len(live)
            self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(live))
            self.stats.busy_seconds += elapsed
            if self._on_batch is not None:
                self._on_batch(self.name, len(live), elapsed)


__all__ = [
    "BatchScheduler",
    "DeadlineExceeded",
    "DeviceWorker",
    "QueueFull",
    "RequestCancelled",
    "SchedulerClosed",
    "SchedulerError",
    "SchedulerStats",
]
