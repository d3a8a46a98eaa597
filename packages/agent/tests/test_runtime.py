"""AgentRuntime and TaskManager: sessions, one run at a time, status, cancel with a reason,
shutdown, bounded sessions."""

from __future__ import annotations

import asyncio

import pytest

from workbench_agent import (
    AgentRuntime,
    AgentSettings,
    LLMResponse,
    RunConflict,
    ScriptedLLM,
    SessionNotFound,
    TaskManager,
    ToolCall,
    ToolRegistry,
    tool,
)
from workbench_agent._loop import RunResult
from workbench_agent._runtime import RunHandle


@tool(timeout=None)
async def park() -> str:
    """Waits until cancelled."""
    await asyncio.sleep(60)
    return "never"


async def test_task_manager_reports_status_and_cancels_with_a_reason() -> None:
    tm = TaskManager()
    seen: list[str] = []

    async def work(handle: RunHandle) -> RunResult:
        reason = await handle.token.wait()
        seen.append(reason)
        return RunResult(status="cancelled", reason=reason)

    handle = tm.start("ses_1", "prompt", work)
    await asyncio.sleep(0)
    assert tm.status(handle.id).status == "running" and tm.active() == [handle]
    assert tm.cancel(handle.id, "because") is True
    assert tm.status(handle.id).status == "cancelling"
    assert handle.task is not None
    await handle.task
    assert seen == ["because"] and tm.status(handle.id).status == "cancelled"
    assert tm.cancel(handle.id, "again") is False
    with pytest.raises(KeyError):
        tm.status("run_missing")


async def test_a_session_runs_one_prompt_at_a_time_and_keeps_history() -> None:
    rt = AgentRuntime(
        ScriptedLLM([LLMResponse(tool_calls=[ToolCall(name="park")]), "second answer"]),
        ToolRegistry([park]),
        system_prompt="You are terse.",
    )
    session = rt.create_session()
    first = rt.start_run(session.id, "one")
    with pytest.raises(RunConflict):
        rt.start_run(session.id, "two")
    await asyncio.sleep(0.05)
    cancelled = rt.cancel(session.id, "user changed their mind")
    assert cancelled is first and first.task is not None
    result = await first.task
    assert result.status == "cancelled" and result.reason == "user changed their mind"
    assert rt.cancel(session.id) is None  # nothing running
    second = rt.start_run(session.id, "two")
    assert second.task is not None and (await second.task).final == "second answer"
    roles = [m.role for m in session.history]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert session.history[0].content == "You are terse."


async def test_shutdown_cancels_every_active_run() -> None:
    rt = AgentRuntime(
        ScriptedLLM([LLMResponse(tool_calls=[ToolCall(name="park")])] * 2), ToolRegistry([park])
    )
    handles = [rt.start_run(rt.create_session().id, "p") for _ in range(2)]
    await asyncio.sleep(0.05)
    await rt.aclose()
    assert [h.status for h in handles] == ["cancelled", "cancelled"]
    assert all(h.result is not None and h.result.reason == "server shutting down" for h in handles)


async def test_sessions_are_bounded_and_unknown_ids_are_errors() -> None:
    rt = AgentRuntime(ScriptedLLM([]), settings=AgentSettings(max_sessions=2))
    a, b, c = (rt.create_session() for _ in range(3))
    assert [s.id for s in rt.sessions()] == [b.id, c.id]
    with pytest.raises(SessionNotFound):
        rt.get_session(a.id)
