"""Futures for long operations: ``?wait=false`` answers 202 ``{request_id}`` at once.

The work runs as a task on the server's loop; ``POST futures/retrieve`` long-polls for its outcome.
Outcomes are kept in a bounded LRU with a TTL (settings), so a client that never comes back does
not grow the server without bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from workbench_core.protocol import ErrorDetail, FutureResult


@dataclass
class _Record:
    request_id: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: Any = None
    error: ErrorDetail | None = None
    http_status: int | None = None
    task: asyncio.Task[None] | None = None
    expires: float = 0.0
    progress: dict[str, Any] | None = None


# The record of the future whose work is running in this task, so work can report progress
# without knowing it runs as a future (the same code serves ``?wait=true``).
_current: contextvars.ContextVar[_Record | None] = contextvars.ContextVar(
    "workbench_future", default=None
)


def progress_reporter() -> Callable[[dict[str, Any]], None] | None:
    """A callback that records progress on the running future, or None outside a future.

    The callback may be called from the engine's worker thread: it only swaps one reference,
    which readers on the event loop see whole.
    """
    record = _current.get()
    if record is None:
        return None

    def report(progress: dict[str, Any]) -> None:
        record.progress = dict(progress)

    return report


class FutureStoreFull(Exception):
    pass


class FutureStore:
    def __init__(self, max_entries: int = 4096, ttl_s: float = 3600.0) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _evict(self) -> None:
        now = time.monotonic()
        for rid in [
            r for r, rec in self._records.items() if rec.done.is_set() and rec.expires < now
        ]:
            del self._records[rid]
        while len(self._records) >= self.max_entries:
            victim = next((r for r, rec in self._records.items() if rec.done.is_set()), None)
            if victim is None:
                raise FutureStoreFull(
                    f"{self.max_entries} operations are already pending; retry later"
                )
            del self._records[victim]

    def spawn(
        self,
        work: Awaitable[Any],
        to_error: Any,
    ) -> str:
        """Run ``work`` in the background; ``to_error(exc) -> (status, ErrorDetail)``.

        Raises:
            FutureStoreFull: every slot holds pending work (``work`` is closed, never run).
        """
        try:
            self._evict()
        except FutureStoreFull:
            close = getattr(work, "close", None)
            if close is not None:
                close()
            raise
        rid = f"fut_{uuid.uuid4().hex}"
        record = _Record(rid)
        self._records[rid] = record

        async def runner() -> None:
            _current.set(record)
            try:
                value = await work
                record.result = (
                    value.model_dump(mode="json") if hasattr(value, "model_dump") else value
                )
                record.http_status = 200
            except Exception as exc:
                record.http_status, record.error = to_error(exc)
            finally:
                record.expires = time.monotonic() + self.ttl_s
                record.done.set()

        record.task = asyncio.get_running_loop().create_task(runner(), name=rid)
        return rid

    def known(self, request_id: str) -> bool:
        return request_id in self._records

    async def retrieve(self, request_id: str, timeout: float) -> FutureResult | None:
        record = self._records.get(request_id)
        if record is None:
            return None
        self._records.move_to_end(request_id)
        if not record.done.is_set() and timeout > 0:
            try:
                await asyncio.wait_for(record.done.wait(), timeout=timeout)
            except TimeoutError:
                pass
        if not record.done.is_set():
            return FutureResult(request_id=request_id, status="pending", progress=record.progress)
        if record.error is not None:
            return FutureResult(
                request_id=request_id,
                status="error",
                error=record.error,
                http_status=record.http_status,
                progress=record.progress,
            )
        return FutureResult(
            request_id=request_id,
            status="done",
            result=record.result,
            http_status=200,
            progress=record.progress,
        )

    async def close(self) -> None:
        tasks = [r.task for r in self._records.values() if r.task is not None and not r.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
