"""@tool schemas, ToolRegistry and ToolRunner: validation, threads, timeout, retry, cancel, events."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Literal

import pytest

from workbench_agent import (
    RetryableToolError,
    ToolCall,
    ToolNotFound,
    ToolRegistry,
    ToolRunner,
    tool,
)
from workbench_core.cancel import Cancelled, CancelToken
from workbench_core.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, jitter=0.0)


def recorder() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    events: list[tuple[str, dict[str, Any]]] = []
    return events, lambda t, d: events.append((t, d))


def test_schema_comes_from_type_hints_and_google_docstring() -> None:
    @tool(timeout=3)
    def search(query: str, limit: int = 10, mode: Literal["fast", "exact"] = "fast") -> list[str]:
        """Search the runs.

        Args:
            query: words to look for.
            limit: how many results
                at most.
            mode: matching strategy.
        """
        return []

    assert search.name == "search" and search.description == "Search the runs."
    assert search.timeout == 3 and not search.is_async
    props = search.parameters["properties"]
    assert props["query"] == {"type": "string", "description": "words to look for."}
    assert props["limit"]["type"] == "integer" and props["limit"]["default"] == 10
    assert props["limit"]["description"] == "how many results at most."
    assert props["mode"]["enum"] == ["fast", "exact"]
    assert search.parameters["required"] == ["query"]
    assert search.parameters["additionalProperties"] is False


def test_cancel_token_parameter_is_hidden_from_the_model() -> None:
    @tool
    async def slow(n: int, token: CancelToken) -> int:
        """Count."""
        return n

    assert list(slow.parameters["properties"]) == ["n"]
    assert slow.token_param == "token" and slow.is_async


def test_registry_rejects_duplicates_and_names_known_tools() -> None:
    @tool
    def a() -> int:
        """A."""
        return 1

    reg = ToolRegistry([a])
    with pytest.raises(ValueError, match="already registered"):
        reg.register(a)
    with pytest.raises(ToolNotFound, match="available: a"):
        reg.get("b")
    assert [s.name for s in reg.schemas()] == ["a"]


async def test_invalid_arguments_become_an_error_naming_the_field() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    events, emit = recorder()
    runner = ToolRunner(ToolRegistry([add]), emit=emit)
    result = await runner.run(ToolCall(name="add", args={"a": "x", "c": 1}))
    assert not result.ok
    assert "a: Input should be a valid integer" in (result.error or "")
    assert "b: Field required" in (result.error or "")
    assert "c: Extra inputs are not permitted" in (result.error or "")
    assert [t for t, _ in events] == ["tool_start", "tool_error"]
    assert result.attempts == 0  # never ran


async def test_sync_tools_run_in_a_worker_thread() -> None:
    seen: list[str] = []

    @tool
    def where() -> str:
        """Which thread."""
        seen.append(threading.current_thread().name)
        return "ok"

    result = await ToolRunner(ToolRegistry([where])).run(ToolCall(name="where"))
    assert result.ok and result.output == "ok"
    assert seen and seen[0] != threading.main_thread().name


async def test_async_tool_timeout_is_reported_as_tool_error() -> None:
    @tool(timeout=0.05)
    async def hang() -> None:
        """Hang."""
        await asyncio.sleep(30)

    events, emit = recorder()
    result = await ToolRunner(ToolRegistry([hang]), emit=emit).run(ToolCall(name="hang"))
    assert not result.ok and "timed out after 0.05s" in (result.error or "")
    assert events[-1][0] == "tool_error" and "duration_ms" in events[-1][1]


async def test_sync_tool_timeout_stops_waiting_for_the_thread() -> None:
    release = threading.Event()

    @tool(timeout=0.05)
    def block() -> None:
        """Block."""
        release.wait(5)

    result = await ToolRunner(ToolRegistry([block])).run(ToolCall(name="block"))
    release.set()
    assert not result.ok and "timed out" in (result.error or "")


async def test_transient_failures_are_retried_until_success() -> None:
    calls = 0

    @tool(retry=FAST)
    def flaky() -> str:
        """Fails twice."""
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RetryableToolError(f"try {calls}")
        return "third time"

    events, emit = recorder()
    result = await ToolRunner(ToolRegistry([flaky]), emit=emit).run(ToolCall(name="flaky"))
    assert result.ok and result.output == "third time" and result.attempts == 3
    assert events[-1][0] == "tool_end" and events[-1][1]["attempts"] == 3


async def test_timeouts_are_retried_but_permanent_errors_are_not() -> None:
    attempts = {"slow": 0, "broken": 0}

    @tool(timeout=0.02, retry=FAST)
    async def slow() -> str:
        """First attempt hangs."""
        attempts["slow"] += 1
        if attempts["slow"] == 1:
            await asyncio.sleep(10)
        return "done"

    @tool(retry=FAST)
    def broken() -> None:
        """Always a bug."""
        attempts["broken"] += 1
        raise KeyError("nope")

    runner = ToolRunner(ToolRegistry([slow, broken]))
    assert (await runner.run(ToolCall(name="slow"))).output == "done"
    bad = await runner.run(ToolCall(name="broken"))
    assert not bad.ok and bad.error == "KeyError: 'nope'" and attempts["broken"] == 1


async def test_cancel_stops_an_async_tool_and_emits_tool_cancelled() -> None:
    started = asyncio.Event()

    @tool
    async def wait_forever() -> None:
        """Wait."""
        started.set()
        await asyncio.sleep(60)

    events, emit = recorder()
    token = CancelToken()
    task = asyncio.create_task(
        ToolRunner(ToolRegistry([wait_forever]), emit=emit).run(
            ToolCall(name="wait_forever"), token
        )
    )
    await started.wait()
    token.cancel("user pressed stop")
    with pytest.raises(Cancelled, match="user pressed stop"):
        await task
    assert [t for t, _ in events] == ["tool_start", "tool_cancelled"]
    assert events[1][1]["reason"] == "user pressed stop"


async def test_sync_tool_sees_cancellation_through_its_token() -> None:
    stopped = threading.Event()

    @tool(timeout=None)
    def loop(token: CancelToken) -> None:
        """Poll the token."""
        while True:
            try:
                token.checkpoint()
            except Cancelled:
                stopped.set()
                raise
            time.sleep(0.005)

    token = CancelToken()
    task = asyncio.create_task(ToolRunner(ToolRegistry([loop])).run(ToolCall(name="loop"), token))
    await asyncio.sleep(0.05)
    token.cancel("stop")
    with pytest.raises(Cancelled):
        await task
    assert stopped.wait(2)


async def test_many_calls_run_in_parallel_and_keep_order() -> None:
    both = asyncio.Barrier(2)

    @tool
    async def meet(n: int) -> int:
        """Both calls must be running at once to pass the barrier."""
        async with asyncio.timeout(5):
            await both.wait()
        return n * 10

    runner = ToolRunner(ToolRegistry([meet]))
    results = await runner.run_many(
        [ToolCall(name="meet", args={"n": 1}), ToolCall(name="meet", args={"n": 2})]
    )
    assert [r.output for r in results] == [10, 20]
