"""The agent on an OpenAI-compatible endpoint with native tool calls: our own /v1 on the tiny model.

The tiny model has random weights, so a required call is valid only because the server forces
it by grammar; what these tests prove is the wire path (tools out, ``tool_calls`` back, results
in as ``tool`` messages) and that the default served-model path is the native one.
"""

from __future__ import annotations

from typing import Any

import pytest

from workbench_agent import (
    Message,
    OpenAICompatError,
    OpenAICompatLLM,
    ServedLLM,
    ToolRegistry,
    ToolSchema,
    run_agent,
    tool,
)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


ADD = ToolSchema(
    name="add",
    description="Add two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)


def llm_on(url: str, **kw: Any) -> OpenAICompatLLM:
    return OpenAICompatLLM(url + "/v1", "tiny-llama", seed=1, temperature=1.0, **kw)


async def test_a_required_call_comes_back_as_a_tool_call_with_valid_args(serving_url: str) -> None:
    llm = llm_on(serving_url, tool_choice="required", parallel_tool_calls=False)
    response = await llm.generate([Message.user("What is 2+3?")], [ADD])
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert call.name == "add" and call.id.startswith("call_")
    assert set(call.args) == {"a", "b"} and all(isinstance(v, int) for v in call.args.values())
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


async def test_streamed_calls_arrive_whole_at_the_end(serving_url: str) -> None:
    llm = llm_on(serving_url, tool_choice="required")
    deltas = [d async for d in llm.stream([Message.user("What is 2+3?")], [ADD])]
    last = deltas[-1]
    assert last.finish_reason == "tool_calls" and last.usage is not None
    assert last.tool_calls and all(c.name == "add" for c in last.tool_calls)
    assert all(set(c.args) == {"a", "b"} for c in last.tool_calls)
    assert not any(d.tool_calls for d in deltas[:-1])


async def test_the_loop_runs_native_calls_and_sends_results_back_as_tool_messages(
    serving_url: str,
) -> None:
    llm = llm_on(serving_url, tool_choice="required", parallel_tool_calls=False, max_tokens=80)
    history = [Message.user("What is 2+3?")]
    events: list[tuple[str, dict[str, Any]]] = []
    result = await run_agent(
        llm, history, ToolRegistry([add]), emit=lambda t, d: events.append((t, d)), max_steps=2
    )
    # "required" calls a tool every turn, so the run ends at max_steps after two good calls.
    assert result.status == "max_steps" and result.tool_calls == 2
    assert ("run_start", {"max_steps": 2, "native_tools": True, "tools": 1}) in events
    tool_turns = [m for m in history if m.role == "tool"]
    assert len(tool_turns) == 2 and all(m.tool_call_id for m in tool_turns)
    calls = [c for m in history if m.role == "assistant" for c in m.tool_calls]
    assert [m.tool_call_id for m in tool_turns] == [c.id for c in calls]
    for m, c in zip(tool_turns, calls, strict=True):
        assert m.content.strip() == str(c.args["a"] + c.args["b"])


async def test_auto_lets_the_model_answer_in_text(serving_url: str) -> None:
    llm = llm_on(serving_url, max_tokens=8)
    result = await run_agent(llm, [Message.user("Hi")], ToolRegistry([add]), max_steps=3)
    # A random model almost never writes a valid call on its own: it answers in text.
    assert result.status in ("done", "max_steps") and result.steps >= 1


async def test_an_invalid_tool_schema_is_the_servers_400_naming_it(serving_url: str) -> None:
    bad = ToolSchema(name="add", parameters={"type": "object", "required": 5})
    with pytest.raises(OpenAICompatError) as info:
        await llm_on(serving_url).generate([Message.user("x")], [bad])
    assert info.value.status == 400 and info.value.param == "tools.0.function.parameters"


async def test_served_llm_defaults_to_native_tool_calls(serving_url: str) -> None:
    llm = ServedLLM(base_url=serving_url, max_tokens=80, seed=3, tool_choice="required")
    assert llm.supports_tools is True
    response = await llm.generate([Message.user("What is 2+3?")], [ADD])
    assert response.tool_calls and all(c.name == "add" for c in response.tool_calls)
    detected = await ServedLLM.for_model(serving_url, "tiny-llama")
    assert detected.supports_tools is True  # the tiny preset's template renders tools
