"""The `workbench agent chat` CLI against a real agent server, and the package's import weight."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from workbench_agent import (
    AgentRuntime,
    LLMResponse,
    ScriptedLLM,
    ToolCall,
    ToolRegistry,
    create_app,
    tool,
)
from workbench_agent.cli import ChatClient, agent

from ._servers import serve


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(timeout=None)
async def wait_long() -> str:
    """Waits for a minute unless cancelled."""
    await asyncio.sleep(60)
    return "late"


@pytest.fixture
def agent_server() -> Iterator[tuple[str, AgentRuntime]]:
    rt = AgentRuntime(ScriptedLLM([]), ToolRegistry([add, wait_long]))
    with serve(create_app(rt)) as url:
        yield url, rt


def test_import_workbench_agent_loads_no_heavy_libraries() -> None:
    code = (
        "import sys, workbench_agent, workbench_agent.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'google.genai', 'fastapi')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_chat_prompt_mode_streams_text_and_shows_tool_calls(
    agent_server: tuple[str, AgentRuntime],
) -> None:
    url, rt = agent_server
    assert isinstance(rt.llm, ScriptedLLM)
    rt.llm._script.extend(
        [LLMResponse(tool_calls=[ToolCall(name="add", args={"a": 40, "b": 2})]), "答案是 42"]
    )
    result = CliRunner().invoke(agent, ["chat", "--url", url, "-p", "四十加二？"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert '→ add {"a": 40, "b": 2}' in out
    assert "✓ add" in out and "42" in out
    assert "答案是 42" in out
    assert "done · 2 steps · 1 tool calls" in out
    assert rt.llm.calls[0][-1].content == "四十加二？"


def test_chat_exits_non_zero_when_a_run_fails(agent_server: tuple[str, AgentRuntime]) -> None:
    url, rt = agent_server
    assert isinstance(rt.llm, ScriptedLLM)
    rt.llm._script.append(RuntimeError("model down"))
    result = CliRunner().invoke(agent, ["chat", "--url", url, "-p", "hi"])
    assert result.exit_code == 1
    assert "error: RuntimeError: model down" in result.output


def test_unreachable_server_is_a_clear_error() -> None:
    result = CliRunner().invoke(agent, ["chat", "--url", "http://127.0.0.1:9", "-p", "hi"])
    assert result.exit_code == 1 and "cannot reach the agent at http://127.0.0.1:9" in result.output


def test_ctrl_c_cancels_the_run_not_the_program(agent_server: tuple[str, AgentRuntime]) -> None:
    url, rt = agent_server
    assert isinstance(rt.llm, ScriptedLLM)
    rt.llm._script.extend([LLMResponse(tool_calls=[ToolCall(name="wait_long")]), "next answer"])
    console = Console(record=True, width=120)
    client = ChatClient(url, console)
    seen: list[str] = []

    def press_ctrl_c_once(type: str, _data: dict[str, Any]) -> None:
        seen.append(type)
        if type == "tool_start":
            raise KeyboardInterrupt  # what the terminal delivers on Ctrl-C

    done = client.turn("wait", on_event=press_ctrl_c_once)
    assert done["status"] == "cancelled" and done["reason"] == "cancelled from the CLI (Ctrl-C)"
    assert seen[-3:] == ["tool_cancelled", "cancelled", "run_done"]
    # The program (and the session) carry on: the next prompt works.
    again = client.turn("still there?")
    client.close()
    assert again["status"] == "done" and again["final"] == "next answer"
    text = console.export_text()
    assert "cancelling…" in text and "⏹ wait_long cancelled" in text


def test_every_exported_name_resolves_and_dir_lists_them() -> None:
    import workbench_agent

    missing = [n for n in workbench_agent.__all__ if getattr(workbench_agent, n, None) is None]
    assert missing == []
    assert set(workbench_agent.__all__) <= set(dir(workbench_agent))
    with pytest.raises(AttributeError):
        workbench_agent.not_a_name  # noqa: B018
