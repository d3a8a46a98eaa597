"""aio: the background loop thread for sync callers."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import threading
from typing import Any

import pytest

from workbench_core import aio
from workbench_core.aio import LoopThread, LoopThreadError, get_loop_thread


def test_run_returns_result_computed_on_the_loop_thread() -> None:
    with LoopThread("t1") as lt:

        async def where() -> str:
            await asyncio.sleep(0)
            return threading.current_thread().name

        assert lt.run(where()) == "t1"
        assert lt.in_loop_thread() is False


def test_submit_returns_concurrent_future_and_propagates_exceptions() -> None:
    with LoopThread() as lt:

        async def fail() -> None:
            raise ValueError("bad")

        fut = lt.submit(fail())
        with pytest.raises(ValueError, match="bad"):
            fut.result(5)


def test_run_timeout_cancels_the_task() -> None:
    with LoopThread() as lt:
        cancelled = threading.Event()

        async def slow() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(TimeoutError):
            lt.run(slow(), timeout=0.05)
        assert cancelled.wait(5)


def test_run_from_inside_own_loop_raises_instead_of_deadlocking() -> None:
    with LoopThread() as lt:

        async def nested() -> int:
            return lt.run(asyncio.sleep(0, 1))

        with pytest.raises(LoopThreadError, match="deadlock"):
            lt.run(nested(), timeout=5)


async def test_run_from_a_different_running_loop_works() -> None:
    with LoopThread() as lt:
        assert await asyncio.to_thread(lt.run, asyncio.sleep(0, "ok")) == "ok"


def test_stop_cancels_pending_tasks_joins_thread_and_refuses_new_work() -> None:
    lt = LoopThread()
    cancelled = threading.Event()
    started = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lt.submit(forever())
    assert started.wait(5)
    thread = lt.thread
    lt.stop()
    assert cancelled.is_set()
    assert thread is not None and not thread.is_alive()
    coro = asyncio.sleep(0)
    with pytest.raises(LoopThreadError, match="stopped"):
        lt.submit(coro)
    lt.stop()  # idempotent


def test_get_loop_thread_is_one_shared_instance_even_under_concurrent_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aio, "_default", None)
    got: list[LoopThread] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        got.append(get_loop_thread())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(x) for x in got}) == 1
    lt = got[0]
    assert lt.run(asyncio.sleep(0, 5)) == 5
    lt.stop()
    replacement = get_loop_thread()
    assert replacement is not lt and replacement.is_running
    replacement.stop()


def test_default_loop_thread_is_stopped_cleanly_at_interpreter_exit() -> None:
    code = (
        "import asyncio\n"
        "from workbench_core.aio import get_loop_thread\n"
        "lt = get_loop_thread()\n"
        "async def forever():\n"
        "    try:\n"
        "        await asyncio.sleep(60)\n"
        "    finally:\n"
        "        print('cleaned up', flush=True)\n"
        "lt.submit(forever())\n"
        "print(lt.run(asyncio.sleep(0, 'ran')), flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ran", "cleaned", "up"]


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_forked_child_gets_a_working_loop_thread_instead_of_the_parents_dead_one() -> None:
    lt = get_loop_thread()
    assert lt.run(asyncio.sleep(0, "parent")) == "parent"
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_child_uses_default_loop, args=(results,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert results.get(timeout=5) == "child ok"
    assert lt.run(asyncio.sleep(0, "still parent")) == "still parent"


def _child_uses_default_loop(results: Any) -> None:
    lt = get_loop_thread()
    results.put(lt.run(asyncio.sleep(0, "child ok"), timeout=20))
