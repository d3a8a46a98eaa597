"""The ReAct loop, deterministic with ScriptedLLM: every path and the events it emits, in order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from workbench_agent import (
    Delta,
    LLMResponse,
    Message,
    ScriptedLLM,
    ToolCall,
    ToolRegistry,
    parse_action,
    run_agent,
    tool,
)
from workbench_agent._loop import ActionParseError
from workbench_core.cancel import CancelToken


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def calls(*items: tuple[str, dict[str, Any]]) -> LLMResponse:
    return LLMResponse(
        tool_calls=[ToolCall(id=f"c{i}", name=n, args=a) for i, (n, a) in enumerate(items)]
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, type: str, data: dict[str, Any]) -> None:
        self.events.append((type, data))

    @property
    def types(self) -> list[str]:
        return [t for t, _ in self.events]

    def without_deltas(self) -> list[str]:
        return [t for t in self.types if t != "llm_delta"]


async def test_tool_call_then_observation_then_final() -> None:
    llm = ScriptedLLM([calls(("add", {"a": 2, "b": 3})), "The sum is 5."])
    rec = Recorder()
    history = [Message.user("What is 2+3?")]
    result = await run_agent(llm, history, ToolRegistry([add]), emit=rec)
    assert result.status == "done" and result.final == "The sum is 5."
    assert result.steps == 2 and result.tool_calls == 1
    assert rec.without_deltas() == [
        "run_start",
        "step_start",
        "model_output",
        "tool_start",
        "tool_end",
        "observation",
        "step_start",
        "model_output",
        "final",
        "run_done",
    ]
    assert "".join(d["text"] for t, d in rec.events if t == "llm_delta") == "The sum is 5."
    # What the model saw on its second turn: the call and the tool's answer.
    second = llm.calls[1]
    assert second[-2].role == "assistant" and second[-2].tool_calls[0].name == "add"
    assert second[-1].role == "tool" and second[-1].content == "5"
    assert second[-1].tool_call_id == "c0"
    assert [s.name for s in llm.tools_seen[0]] == ["add"]
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]


async def test_invalid_tool_arguments_go_back_to_the_model_as_an_observation() -> None:
    llm = ScriptedLLM([calls(("add", {"a": "two", "b": 3})), calls(("add", {"a": 2, "b": 3})), "5"])
    rec = Recorder()
    result = await run_agent(llm, [Message.user("2+3")], ToolRegistry([add]), emit=rec)
    assert result.status == "done"
    observation = json.loads(llm.calls[1][-1].content)
    assert "a: Input should be a valid integer" in observation["error"]
    assert rec.types.count("tool_error") == 1 and rec.types.count("tool_end") == 1


async def test_max_steps_ends_the_run_with_an_error_event() -> None:
    llm = ScriptedLLM([calls(("add", {"a": 1, "b": 1}))] * 3)
    rec = Recorder()
    result = await run_agent(
        llm, [Message.user("loop")], ToolRegistry([add]), emit=rec, max_steps=3
    )
    assert result.status == "max_steps" and result.steps == 3
    assert rec.types[-2:] == ["error", "run_done"]
    assert rec.events[-2][1]["type"] == "max_steps"
    assert llm.remaining == 0


async def test_json_protocol_for_models_without_function_calling() -> None:
    llm = ScriptedLLM(
        [
            'Sure. ```json\n{"type": "tool", "tool_name": "add", "args": {"a": 4, "b": 5}}\n```',
            '{"type": "final", "final": "九"}',
        ],
        supports_tools=False,
    )
    rec = Recorder()
    result = await run_agent(llm, [Message.user("4+5?")], ToolRegistry([add]), emit=rec)
    assert result.status == "done" and result.final == "九"
    first = llm.calls[0]
    assert first[0].role == "system" and '"type": "tool"' in first[0].content
    assert "- add(a: integer, b: integer): Add two integers." in first[0].content
    assert llm.tools_seen[0] == []  # no native declarations
    assert llm.calls[1][-1].content == "9"


async def test_malformed_output_goes_back_once_then_recovers() -> None:
    llm = ScriptedLLM(
        ["I think the answer is 9", '{"type": "final", "final": "9"}'], supports_tools=False
    )
    rec = Recorder()
    result = await run_agent(llm, [Message.user("4+5?")], ToolRegistry([add]), emit=rec)
    assert result.status == "done" and result.final == "9"
    correction = llm.calls[1][-1]
    assert (
        correction.role == "user"
        and "not a valid action: no JSON object found" in correction.content
    )
    obs = [d for t, d in rec.events if t == "observation"]
    assert obs and "no JSON object found" in obs[0]["error"]


async def test_malformed_output_twice_in_a_row_fails_the_run() -> None:
    llm = ScriptedLLM(["nope", '{"type": "dance"}', "unused"], supports_tools=False)
    rec = Recorder()
    result = await run_agent(llm, [Message.user("?")], ToolRegistry([add]), emit=rec)
    assert result.status == "error" and "malformed twice" in (result.error or "")
    assert "field 'type' must be" in (result.error or "")
    assert rec.types[-2:] == ["error", "run_done"] and llm.remaining == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"type": "tool", "args": {}}', "field 'tool_name'"),
        ('{"type": "tool", "tool_name": "x", "args": [1]}', "field 'args' must be a JSON object"),
        ('{"type": "final", "final": 3}', "field 'final' must be a string"),
        ("[]", "empty list"),
    ],
)
def test_parse_action_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ActionParseError, match=message):
        parse_action(text)


def test_parse_action_accepts_a_list_of_parallel_tool_calls() -> None:
    got, final = parse_action(
        '[{"type":"tool","tool_name":"a","args":{}},{"type":"tool","tool_name":"b"}]'
    )
    assert [c.name for c in got] == ["a", "b"] and final is None


async def test_tool_timeout_becomes_an_observation_and_the_run_continues() -> None:
    @tool(timeout=0.05)
    async def stuck() -> None:
        """Never returns."""
        await asyncio.sleep(60)

    llm = ScriptedLLM([calls(("stuck", {})), "gave up on it"])
    rec = Recorder()
    result = await run_agent(llm, [Message.user("go")], ToolRegistry([stuck]), emit=rec)
    assert result.status == "done"
    assert "timed out after 0.05s" in json.loads(llm.calls[1][-1].content)["error"]
    assert "tool_error" in rec.types


async def test_retry_inside_the_loop_reports_attempts() -> None:
    from workbench_agent import RetryableToolError
    from workbench_core.retry import RetryPolicy

    n = 0

    @tool(retry=RetryPolicy(max_attempts=3, initial_delay=0.001, jitter=0.0))
    async def flaky() -> str:
        """Fails once."""
        nonlocal n
        n += 1
        if n == 1:
            raise RetryableToolError("blip")
        return "ok"

    rec = Recorder()
    result = await run_agent(
        ScriptedLLM([calls(("flaky", {})), "fine"]),
        [Message.user("x")],
        ToolRegistry([flaky]),
        emit=rec,
    )
    assert result.status == "done"
    end = next(d for t, d in rec.events if t == "tool_end")
    assert end["attempts"] == 2


async def test_several_calls_in_one_step_run_in_parallel() -> None:
    barrier = asyncio.Barrier(2)

    @tool
    async def meet(n: int) -> int:
        """Only passes when both calls run at once."""
        async with asyncio.timeout(5):
            await barrier.wait()
        return n

    llm = ScriptedLLM([calls(("meet", {"n": 1}), ("meet", {"n": 2})), "both met"])
    rec = Recorder()
    result = await run_agent(llm, [Message.user("x")], ToolRegistry([meet]), emit=rec)
    assert result.status == "done" and result.tool_calls == 2
    assert [m.content for m in llm.calls[1][-2:]] == ["1", "2"]
    assert rec.types.count("tool_end") == 2


async def test_cancel_mid_stream_closes_the_stream_and_emits_cancelled() -> None:
    first_delta_sent = asyncio.Event()
    stream_closed = asyncio.Event()

    def endless(_messages: list[Message]) -> AsyncIterator[Delta]:
        async def gen() -> AsyncIterator[Delta]:
            try:
                yield Delta(text="thinking")
                first_delta_sent.set()
                await asyncio.sleep(60)
                yield Delta(text="never")
            finally:
                stream_closed.set()

        return gen()

    llm = ScriptedLLM([endless])
    rec = Recorder()
    token = CancelToken()
    task = asyncio.create_task(
        run_agent(llm, [Message.user("x")], ToolRegistry([add]), emit=rec, token=token)
    )
    await asyncio.wait_for(first_delta_sent.wait(), 5)
    token.cancel("user hit stop")
    result = await asyncio.wait_for(task, 5)
    assert result.status == "cancelled" and result.reason == "user hit stop"
    assert stream_closed.is_set()
    assert rec.types == ["run_start", "step_start", "llm_delta", "cancelled", "run_done"]
    assert rec.events[-1][1]["status"] == "cancelled"


async def test_cancel_mid_tool_stops_every_pending_tool_in_order() -> None:
    started = 0
    both_started = asyncio.Event()

    @tool
    async def slow(n: int) -> int:
        """Waits a long time."""
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await asyncio.sleep(60)
        return n

    llm = ScriptedLLM([calls(("slow", {"n": 1}), ("slow", {"n": 2})), "unreachable"])
    rec = Recorder()
    token = CancelToken()
    history = [Message.user("x")]
    task = asyncio.create_task(run_agent(llm, history, ToolRegistry([slow]), emit=rec, token=token))
    await asyncio.wait_for(both_started.wait(), 5)
    token.cancel("too slow")
    result = await asyncio.wait_for(task, 5)
    assert result.status == "cancelled" and result.reason == "too slow"
    assert rec.without_deltas() == [
        "run_start",
        "step_start",
        "model_output",
        "tool_start",
        "tool_start",
        "tool_cancelled",
        "tool_cancelled",
        "cancelled",
        "run_done",
    ]
    assert llm.remaining == 1  # the model was not asked again
    # Every call is answered, so the next run's conversation is valid for any provider.
    assert [m.role for m in history[-2:]] == ["tool", "tool"]
    assert json.loads(history[-1].content) == {"error": "cancelled: too slow"}
    # The task's cancel request was absorbed: the task can keep awaiting normally.
    await asyncio.sleep(0)


async def test_model_exception_ends_the_run_with_error() -> None:
    llm = ScriptedLLM([RuntimeError("backend exploded")])
    rec = Recorder()
    result = await run_agent(llm, [Message.user("x")], ToolRegistry(), emit=rec)
    assert result.status == "error" and "backend exploded" in (result.error or "")
    assert rec.types == ["run_start", "step_start", "error", "run_done"]


async def test_non_streaming_mode_uses_generate() -> None:
    llm = ScriptedLLM(["hello"])
    rec = Recorder()
    result = await run_agent(llm, [Message.user("x")], ToolRegistry(), emit=rec, stream=False)
    assert result.final == "hello" and "llm_delta" not in rec.types


async def test_without_tools_a_json_less_model_answers_in_plain_text() -> None:
    llm = ScriptedLLM(["just text"], supports_tools=False)
    result = await run_agent(llm, [Message.user("hi")], ToolRegistry())
    assert result.status == "done" and result.final == "just text"
    assert all(m.role != "system" for m in llm.calls[0])  # no action protocol prompt


def test_action_prompt_renders_compact_signatures() -> None:
    from typing import Literal

    from workbench_agent._loop import json_action_prompt

    @tool
    def search(
        query: str, tags: list[str] | None = None, mode: Literal["a", "b"] = "a", n: int = 3
    ) -> None:
        """Search."""

    prompt = json_action_prompt([search.schema()])
    assert (
        '- search(query: string, tags: array of string | null = null, mode: "a" | "b" = "a", '
        "n: integer = 3): Search." in prompt
    )
