"""APIFuture from sync and async callers, and the in-order queue of a training run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import workbench_client as wc
from workbench_client import APIFuture
from workbench_client.lib._clients import _InOrder
from workbench_core.aio import LoopThread


@pytest.fixture()
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread("test-loop")
    lt.start()
    yield lt
    lt.stop()


async def _value(v: int, delay: float = 0.0) -> int:
    await asyncio.sleep(delay)
    return v


async def _boom() -> int:
    raise wc.NotFoundError("gone", status_code=404)


def test_result_blocks_until_done_and_raises_the_calls_error(loop_thread: LoopThread) -> None:
    assert APIFuture(loop_thread.submit(_value(3, 0.01)), loop_thread).result(timeout=5) == 3
    with pytest.raises(wc.NotFoundError, match="gone"):
        APIFuture(loop_thread.submit(_boom()), loop_thread).result(timeout=5)


def test_result_timeout_raises_timeout_error_and_leaves_the_call_running(
    loop_thread: LoopThread,
) -> None:
    fut = APIFuture(loop_thread.submit(_value(1, 0.3)), loop_thread)
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.01)
    assert fut.result(timeout=5) == 1


async def test_await_and_result_async_work_from_another_loop(loop_thread: LoopThread) -> None:
    fut = APIFuture(loop_thread.submit(_value(7, 0.01)), loop_thread)
    assert await fut == 7
    assert await fut.result_async(timeout=5) == 7


async def test_result_async_timeout_does_not_cancel_the_call(loop_thread: LoopThread) -> None:
    fut = APIFuture(loop_thread.submit(_value(2, 0.3)), loop_thread)
    with pytest.raises(TimeoutError):
        await fut.result_async(timeout=0.01)
    assert await fut == 2


def test_blocking_result_on_the_loop_thread_raises_instead_of_deadlocking(
    loop_thread: LoopThread,
) -> None:
    inner = APIFuture(loop_thread.submit(_value(1, 0.01)), loop_thread)

    async def blocking_inside() -> int:
        return inner.result()

    with pytest.raises(wc.SyncInAsyncContextError, match="deadlock"):
        loop_thread.run(blocking_inside(), timeout=5)


async def test_in_order_runs_by_ticket_even_when_started_out_of_order() -> None:
    order = _InOrder()
    tickets = [order.ticket() for _ in range(5)]
    seen: list[int] = []

    def job(i: int):  # type: ignore[no-untyped-def]
        async def go() -> int:
            await asyncio.sleep(0.01 * (5 - i))  # later tickets are quicker
            seen.append(i)
            return i

        return go

    tasks = [asyncio.ensure_future(order.run(t, job(t))) for t in reversed(tickets)]
    await asyncio.gather(*tasks)
    assert seen == [0, 1, 2, 3, 4]


async def test_a_cancelled_waiter_does_not_block_later_tickets() -> None:
    order = _InOrder()
    t0, t1, t2 = order.ticket(), order.ticket(), order.ticket()
    gate = asyncio.Event()

    async def first() -> str:
        await gate.wait()
        return "first"

    async def quick() -> str:
        return "x"

    a = asyncio.ensure_future(order.run(t0, first))
    b = asyncio.ensure_future(order.run(t1, quick))
    c = asyncio.ensure_future(order.run(t2, quick))
    await asyncio.sleep(0.01)
    b.cancel()
    gate.set()
    assert await a == "first"
    assert await c == "x"
    assert b.cancelled()


def test_a_stopped_loop_thread_is_reported_as_such_not_as_a_deadlock() -> None:
    from workbench_core.aio import LoopThreadError

    lt = LoopThread("short-lived")
    lt.start()
    wb = wc.Workbench(base_url="http://127.0.0.1:9", loop_thread=lt)
    lt.stop()
    with pytest.raises(LoopThreadError, match="stopped"):
        wb.service.health()


def test_every_sync_resource_method_mirrors_its_async_twin() -> None:
    import inspect

    from workbench_client import _resources as a
    from workbench_client import _sync_resources as s

    pairs = [
        (a.ServiceResource, s.SyncServiceResource),
        (a.ModelsResource, s.SyncModelsResource),
        (a.SamplingResource, s.SyncSamplingResource),
        (a.ImagesResource, s.SyncImagesResource),
        (a.VisionResource, s.SyncVisionResource),
        (a.TrainingResource, s.SyncTrainingResource),
        (a.FuturesResource, s.SyncFuturesResource),
    ]
    for async_cls, sync_cls in pairs:
        async_methods = {n for n, f in vars(async_cls).items() if inspect.iscoroutinefunction(f)}
        sync_methods = {n for n, f in vars(sync_cls).items() if inspect.isfunction(f)}
        assert async_methods == sync_methods, sync_cls
        for name in async_methods:
            pa = inspect.signature(getattr(async_cls, name)).parameters
            ps = inspect.signature(getattr(sync_cls, name)).parameters
            assert [(p.name, p.kind, p.default) for p in pa.values()] == [
                (p.name, p.kind, p.default) for p in ps.values()
            ], f"{sync_cls.__name__}.{name}"
