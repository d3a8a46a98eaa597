"""BatchScheduler unit tests with a small in-test engine (the scheduler's own contract).

The engine here is a legitimate test double of the ``Engine`` protocol: it records every batch it
is handed, so the tests can prove what the scheduler did (batched, split by key, dropped,
finished on shutdown) without timing assertions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from workbench_core.cancel import CancelToken
from workbench_serving.scheduler import (
    BatchScheduler,
    DeadlineExceeded,
    DeviceWorker,
    QueueFull,
    RequestCancelled,
    SchedulerClosed,
)


@dataclass
class Item:
    value: int
    key: str = "a"
    fail: bool = False
    cancel: CancelToken | None = None


@dataclass
class RecordingEngine:
    name: str = "fake"
    kind: str = "text"
    batches: list[list[int]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    threads: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.gate.set()

    def load(self) -> None:
        self.threads.add(threading.current_thread().name)

    def batch_key(self, item: Item) -> Hashable:
        return item.key

    def run_batch(self, items: Sequence[Item]) -> list[Any]:
        self.threads.add(threading.current_thread().name)
        self.gate.wait(timeout=10)
        self.batches.append([i.value for i in items])
        return [ValueError(f"bad {i.value}") if i.fail else i.value * 10 for i in items]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


def make(engine: RecordingEngine, **kw: Any) -> tuple[BatchScheduler, DeviceWorker]:
    worker = DeviceWorker("cpu")
    sched = BatchScheduler(engine, worker, **kw)  # type: ignore[arg-type]
    sched.start()
    return sched, worker


async def test_concurrent_requests_share_batches_up_to_max_batch_size() -> None:
    engine = RecordingEngine()
    sched, worker = make(engine, max_batch_size=4, max_wait_ms=50)
    results = await asyncio.gather(*(sched.submit(Item(i)) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert len(engine.batches) < 10
    assert max(len(b) for b in engine.batches) <= 4
    assert sorted(v for b in engine.batches for v in b) == list(range(10))
    await sched.close()
    worker.shutdown()


async def test_items_with_different_batch_keys_never_share_a_batch() -> None:
    engine = RecordingEngine()
    sched, worker = make(engine, max_batch_size=8, max_wait_ms=30)
    items = [Item(i, key="a" if i % 2 else "b") for i in range(8)]
    await asyncio.gather(*(sched.submit(it) for it in items))
    for batch in engine.batches:
        assert len({v % 2 for v in batch}) == 1
    await sched.close()
    worker.shutdown()


async def test_engine_runs_in_the_device_thread_not_the_event_loop() -> None:
    engine = RecordingEngine()
    sched, worker = make(engine, max_batch_size=2, max_wait_ms=0)
    await worker.run(engine.load)
    await sched.submit(Item(1))
    assert engine.threads and all(t.startswith("device-cpu") for t in engine.threads)
    assert threading.current_thread().name not in engine.threads
    await sched.close()
    worker.shutdown()


async def test_full_queue_is_refused_with_a_retry_after_hint() -> None:
    engine = RecordingEngine()
    engine.gate.clear()  # hold the first batch on the device so the queue fills
    sched, worker = make(engine, max_batch_size=1, max_wait_ms=0, max_queue_size=2)
    first = asyncio.create_task(sched.submit(Item(0)))
    while not sched.stats.items and sched.queue_depth:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(sched.submit(Item(i))) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull) as info:
        await sched.submit(Item(3))
    assert info.value.retry_after >= 1
    assert sched.stats.rejected_full == 1
    engine.gate.set()
    assert await first == 0
    assert [await q for q in queued] == [10, 20]
    await sched.close()
    worker.shutdown()


async def test_request_past_its_deadline_is_dropped_and_never_runs() -> None:
    engine = RecordingEngine()
    engine.gate.clear()
    sched, worker = make(engine, max_batch_size=1, max_wait_ms=0)
    blocker = asyncio.create_task(sched.submit(Item(0)))
    await asyncio.sleep(0.05)
    with pytest.raises(DeadlineExceeded):
        await sched.submit(Item(99), timeout=0.05)
    engine.gate.set()
    await blocker
    await sched.submit(Item(1))  # the scheduler goes on serving
    assert all(99 not in b for b in engine.batches)
    assert sched.stats.dropped_deadline >= 1
    await sched.close()
    worker.shutdown()


async def test_cancelled_request_is_dropped_before_it_runs() -> None:
    engine = RecordingEngine()
    engine.gate.clear()
    sched, worker = make(engine, max_batch_size=1, max_wait_ms=0)
    blocker = asyncio.create_task(sched.submit(Item(0)))
    await asyncio.sleep(0.05)
    token = CancelToken()
    victim = asyncio.create_task(sched.submit(Item(42), token=token))
    await asyncio.sleep(0.01)
    token.cancel("client disconnected")
    engine.gate.set()
    await blocker
    with pytest.raises(RequestCancelled):
        await victim
    assert all(42 not in b for b in engine.batches)
    await sched.close()
    worker.shutdown()


async def test_one_failing_item_fails_alone() -> None:
    engine = RecordingEngine()
    sched, worker = make(engine, max_batch_size=4, max_wait_ms=30)
    results = await asyncio.gather(
        sched.submit(Item(1)), sched.submit(Item(2, fail=True)), return_exceptions=True
    )
    assert results[0] == 10
    assert isinstance(results[1], ValueError)
    await sched.close()
    worker.shutdown()


async def test_a_crashing_engine_fails_the_batch_but_not_the_scheduler() -> None:
    class Crashy(RecordingEngine):
        crashed = False

        def run_batch(self, items: Sequence[Item]) -> list[Any]:
            if not self.crashed:
                self.crashed = True
                raise RuntimeError("device fell over")
            return super().run_batch(items)

    engine = Crashy()
    sched, worker = make(engine, max_batch_size=1, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="device fell over"):
        await sched.submit(Item(1))
    assert await sched.submit(Item(2)) == 20
    await sched.close()
    worker.shutdown()


async def test_shutdown_finishes_queued_and_in_flight_work_then_refuses_new() -> None:
    engine = RecordingEngine()
    engine.gate.clear()
    sched, worker = make(engine, max_batch_size=2, max_wait_ms=0)
    tasks = [asyncio.create_task(sched.submit(Item(i))) for i in range(5)]
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(sched.close(grace_s=10))
    await asyncio.sleep(0.01)
    with pytest.raises(SchedulerClosed):
        await sched.submit(Item(100))
    engine.gate.set()
    await closing
    assert [await t for t in tasks] == [0, 10, 20, 30, 40]
    worker.shutdown()
