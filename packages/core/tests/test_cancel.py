"""cancel: checkpoints, waiting, task linking across threads, child tokens, callbacks."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from workbench_core.cancel import Cancelled, CancelToken


def test_checkpoint_passes_while_active_and_raises_with_reason_after_cancel() -> None:
    token = CancelToken()
    token.checkpoint()
    assert not token.cancelled and token.reason is None
    assert token.cancel("user pressed stop") is True
    assert token.cancelled and token.reason == "user pressed stop"
    with pytest.raises(Cancelled) as info:
        token.checkpoint()
    assert info.value.reason == "user pressed stop"
    assert str(info.value) == "user pressed stop"


def test_first_cancel_wins() -> None:
    token = CancelToken()
    assert token.cancel("first")
    assert not token.cancel("second")
    assert token.reason == "first"


async def test_wait_returns_reason_when_cancelled_from_another_thread() -> None:
    token = CancelToken()
    waiter = asyncio.create_task(token.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    threading.Thread(target=token.cancel, args=("from thread",)).start()
    assert await asyncio.wait_for(waiter, 2) == "from thread"


async def test_wait_on_already_cancelled_token_returns_at_once() -> None:
    token = CancelToken()
    token.cancel("done")
    assert await token.wait() == "done"


async def test_cancelled_wait_leaves_no_waiter_behind() -> None:
    token = CancelToken()
    task = asyncio.create_task(token.wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert token._waiters == []


async def test_link_cancels_task_with_reason_even_from_another_thread() -> None:
    token = CancelToken()
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(60)

    task = token.link(asyncio.create_task(work()))
    await started.wait()
    await asyncio.to_thread(token.cancel, "client disconnected")
    with pytest.raises(asyncio.CancelledError) as info:
        await asyncio.wait_for(task, 2)
    assert task.cancelled()
    assert "client disconnected" in str(info.value)


async def test_finished_linked_task_is_unlinked() -> None:
    token = CancelToken()
    task = token.link(asyncio.create_task(asyncio.sleep(0)))
    await task
    assert token._callbacks == []


def test_child_is_cancelled_with_parent_but_not_the_reverse() -> None:
    parent = CancelToken()
    child = parent.child()
    grandchild = child.child()
    other = parent.child()
    other.cancel("only me")
    assert not parent.cancelled
    parent.cancel("shutdown")
    assert child.reason == "shutdown" and grandchild.reason == "shutdown"
    assert other.reason == "only me"


def test_child_of_cancelled_parent_starts_cancelled() -> None:
    parent = CancelToken()
    parent.cancel("gone")
    assert parent.child().reason == "gone"


def test_parent_does_not_keep_finished_children_alive() -> None:
    parent = CancelToken()
    for _ in range(100):
        parent.child()
    gc.collect()
    assert len(parent._children) == 0


def test_on_cancel_runs_once_and_can_be_removed() -> None:
    token = CancelToken()
    calls: list[str] = []
    token.on_cancel(calls.append)
    remove = token.on_cancel(lambda r: calls.append("removed " + r))
    remove()
    token.cancel("why")
    token.cancel("again")
    assert calls == ["why"]


def test_on_cancel_after_cancel_runs_immediately() -> None:
    token = CancelToken()
    token.cancel("x")
    seen: list[str] = []
    token.on_cancel(seen.append)
    assert seen == ["x"]


def test_a_failing_callback_does_not_stop_the_others() -> None:
    token = CancelToken()
    seen: list[str] = []

    def bad(_: str) -> None:
        raise RuntimeError("boom")

    token.on_cancel(bad)
    token.on_cancel(seen.append)
    with pytest.raises(RuntimeError, match="boom"):
        token.cancel("r")
    assert seen == ["r"] and token.cancelled


def test_worker_thread_stops_at_its_next_checkpoint() -> None:
    token = CancelToken()
    steps: list[int] = []
    outcome: list[BaseException] = []
    started = threading.Event()

    def worker() -> None:
        try:
            for i in range(10_000):
                token.checkpoint()
                steps.append(i)
                started.set()
                token.wait_sync(0.001)
        except Cancelled as exc:
            outcome.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    assert started.wait(5)
    token.cancel("stop")
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and outcome[0].args == ("stop",)
    assert len(steps) < 10_000


def test_wait_sync_times_out_while_active() -> None:
    assert CancelToken().wait_sync(0.01) is False
