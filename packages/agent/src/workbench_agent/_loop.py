"""The ReAct loop: ask the model, run the tools it asks for, feed back observations, repeat.

One function, top to bottom, with every event it publishes in plain sight:

    run_start
    step_start -> llm_delta* -> model_output -> (tool_start -> tool_end|tool_error)* ->
    observation*                                   ... repeated up to ``max_steps``
    final -> run_done                              (or error -> run_done, cancelled -> run_done)

Models with native function calling get tool schemas; others are told to answer with a JSON
action (``{"type": "tool", "tool_name", "args"}`` or ``{"type": "final", "final"}``), and output
that does not parse goes back to them once as an error observation.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench_core.cancel import Cancelled, CancelToken

from ._cancel import cancel_scope
from ._messages import LLMClient, LLMResponse, Message, ToolCall, ToolSchema, Usage
from ._tools import Emit, ToolRegistry, ToolRunner

__all__ = [
    "ActionParseError",
    "RunResult",
    "json_action_prompt",
    "parse_action",
    "run_agent",
]

RunStatus = Literal["done", "max_steps", "cancelled", "error"]


@dataclass
class RunResult:
    """How a run ended and what it cost."""

    status: RunStatus
    final: str | None = None
    steps: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    reason: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "final": self.final,
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "usage": self.usage.model_dump(),
            "error": self.error,
            "reason": self.reason,
            "duration_ms": round(self.duration_s * 1000, 3),
        }


class ActionParseError(ValueError):
    """Model output that is not a valid JSON action; the message is what the model is told."""


def json_action_prompt(tools: Sequence[ToolSchema]) -> str:
    """The system-prompt addendum that teaches a model without function calling our protocol."""
    lines = [
        "You can use tools. Answer with exactly one JSON object and nothing else.",
        'To call a tool: {"type": "tool", "tool_name": "<name>", "args": {...}}',
        "To call several tools at once: a JSON list of such objects.",
        'To give the final answer: {"type": "final", "final": "<answer>"}',
        "Tools:",
    ]
    for t in tools:
        lines.append(f"- {t.name}({_signature(t.parameters)}): {t.description}")
    return "\n".join(lines)


def _type_of(schema: dict[str, Any]) -> str:
    """A short type name for a JSON schema (``integer``, ``string | null``, ``array of string``)."""
    if "enum" in schema:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type_of(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_type_of(schema['items'])}"
    return str(kind)


def _signature(parameters: dict[str, Any]) -> str:
    """Arguments as a compact signature: small models read it better and it costs few tokens.

    ``add(a: integer, b: integer = 2)`` instead of the full JSON schema.
    """
    props: dict[str, Any] = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    parts = []
    for name, schema in props.items():
        part = f"{name}: {_type_of(schema)}"
        if name not in required:
            part += " = " + json.dumps(schema.get("default"), ensure_ascii=False)
        parts.append(part)
    return ", ".join(parts)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def _first_json(text: str) -> Any:
    """The first JSON value in ``text`` (fenced or bare); models like to add prose around it."""
    fenced = _FENCE.search(text)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    decoder = json.JSONDecoder()
    for cand in candidates:
        cand = cand.strip()
        for i, ch in enumerate(cand):
            if ch in "[{":
                try:
                    value, _ = decoder.raw_decode(cand[i:])
                    return value
                except json.JSONDecodeError:
                    continue
    raise ActionParseError("no JSON object found in the reply")


def parse_action(text: str) -> tuple[list[ToolCall], str | None]:
    """Parse a JSON action reply into tool calls or a final answer.

    Returns:
        ``(calls, None)`` for tool actions or ``([], final_text)`` for a final answer.

    Raises:
        ActionParseError: saying exactly what is wrong, for the model to fix.
    """
    value = _first_json(text)
    actions = value if isinstance(value, list) else [value]
    if not actions:
        raise ActionParseError("the reply is an empty list; expected an action object")
    calls: list[ToolCall] = []
    for i, act in enumerate(actions):
        where = f"action {i}" if len(actions) > 1 else "action"
        if not isinstance(act, dict):
            raise ActionParseError(f"{where} must be a JSON object")
        kind = act.get("type")
        if kind == "final":
            if len(actions) > 1:
                raise ActionParseError("a final answer cannot be combined with tool calls")
            final = act.get("final")
            if not isinstance(final, str):
                raise ActionParseError(f"{where}: field 'final' must be a string")
            return [], final
        if kind != "tool":
            raise ActionParseError(f'{where}: field \'type\' must be "tool" or "final"')
        name = act.get("tool_name")
        if not isinstance(name, str) or not name:
            raise ActionParseError(f"{where}: field 'tool_name' must be a non-empty string")
        args = act.get("args", {})
        if not isinstance(args, dict):
            raise ActionParseError(f"{where}: field 'args' must be a JSON object")
        calls.append(ToolCall(name=name, args=args))
    return calls, None


def _no_emit(_type: str, _data: dict[str, Any]) -> None:
    return None


async def run_agent(
    llm: LLMClient,
    history: list[Message],
    tools: ToolRegistry | ToolRunner,
    *,
    emit: Emit | None = None,
    token: CancelToken | None = None,
    max_steps: int = 8,
    stream: bool = True,
    on_step: Callable[[int, LLMResponse, float], object] | None = None,
) -> RunResult:
    """Run the ReAct loop on ``history`` (which ends with the user's prompt) until a final answer.

    ``history`` is extended in place with the assistant and tool turns, so a session keeps its
    context across runs. Tool failures are observations, not run failures; cancellation stops the
    model stream and the tools at once and ends the run with status ``cancelled``.

    Args:
        llm: the model.
        history: the conversation; appended to.
        tools: the tools the model is shown; a registry gets a ``ToolRunner`` publishing to
            ``emit``, a runner is used as given (its own ``emit`` receives the tool events).
        emit: receives every event as ``emit(type, data)``.
        token: cancels the run.
        max_steps: model turns allowed before the run ends with status ``max_steps``.
        stream: stream the model's reply (``llm_delta`` events) or generate it in one piece.
        on_step: called after each model turn with (step, response, seconds) (tracker logging).
    """
    emit = emit or _no_emit
    runner = tools if isinstance(tools, ToolRunner) else ToolRunner(tools, emit=emit)
    native = llm.supports_tools
    schemas = runner.registry.schemas()
    result = RunResult(status="error")
    started = time.perf_counter()
    emit("run_start", {"max_steps": max_steps, "native_tools": native, "tools": len(schemas)})
    malformed_in_a_row = 0
    try:
        async with cancel_scope(token):
            for step in range(1, max_steps + 1):
                if token is not None:
                    token.checkpoint()
                result.steps = step
                emit("step_start", {"step": step})

                # 1. Ask the model.
                messages = history
                if not native and schemas:
                    messages = [Message.system(json_action_prompt(schemas)), *history]
                t0 = time.perf_counter()
                if stream:
                    response = await _stream_reply(llm, messages, schemas if native else None, emit)
                else:
                    response = await llm.generate(messages, schemas if native else None)
                llm_seconds = time.perf_counter() - t0
                result.usage = result.usage + response.usage
                emit(
                    "model_output",
                    {
                        "step": step,
                        "text": response.text,
                        "tool_calls": [c.model_dump() for c in response.tool_calls],
                        "usage": response.usage.model_dump(),
                        "duration_ms": round(llm_seconds * 1000, 3),
                    },
                )
                if on_step is not None:
                    on_step(step, response, llm_seconds)

                # 2. Decide: tool calls or a final answer.
                calls = response.tool_calls
                final: str | None = None
                if native or not schemas:
                    # Without tools there is nothing to choose between: the text is the answer.
                    if not calls:
                        final = response.text
                else:
                    try:
                        calls, final = parse_action(response.text)
                    except ActionParseError as exc:
                        malformed_in_a_row += 1
                        history.append(Message.assistant(response.text))
                        if malformed_in_a_row > 1:
                            raise
                        error = (
                            f"Your reply was not a valid action: {exc}. Reply with one JSON "
                            'object: {"type": "tool", ...} or {"type": "final", "final": ...}.'
                        )
                        history.append(Message.user(error))
                        emit("observation", {"step": step, "error": error})
                        continue
                    malformed_in_a_row = 0
                history.append(Message.assistant(response.text, calls))
                if final is not None:
                    result.status, result.final = "done", final
                    emit("final", {"step": step, "text": final})
                    return result

                # 3. Act: several calls in one step run in parallel.
                result.tool_calls += len(calls)
                outcomes = await runner.run_many(calls, token)
                for call, outcome in zip(calls, outcomes, strict=True):
                    content = outcome.content()
                    history.append(Message.tool(content, tool_call_id=call.id, name=call.name))
                    emit(
                        "observation",
                        {
                            "step": step,
                            "call_id": call.id,
                            "name": call.name,
                            "ok": outcome.ok,
                            "content": content,
                        },
                    )
            result.status = "max_steps"
            result.error = f"no final answer within max_steps={max_steps}"
            emit("error", {"type": "max_steps", "message": result.error})
            return result
    except Cancelled as exc:
        result.status, result.reason = "cancelled", exc.reason
        _close_open_calls(history, f"cancelled: {exc.reason}")
        emit("cancelled", {"reason": exc.reason, "step": result.steps})
        return result
    except ActionParseError as exc:
        result.status = "error"
        result.error = f"model output was malformed twice in a row: {exc}"
        emit("error", {"type": "malformed_output", "message": result.error})
        return result
    except Exception as exc:
        result.status = "error"
        result.error = f"{type(exc).__name__}: {exc}"
        emit("error", {"type": type(exc).__name__, "message": result.error})
        return result
    finally:
        result.duration_s = time.perf_counter() - started
        emit("run_done", result.to_dict())


def _close_open_calls(history: list[Message], error: str) -> None:
    """Answer tool calls left without a result, so the history stays valid for the next run.

    Providers reject a conversation in which a function call has no response (Gemini answers
    400), and a run cancelled mid-tool leaves exactly that behind.
    """
    for i in range(len(history) - 1, -1, -1):
        msg = history[i]
        if msg.role == "assistant" and msg.tool_calls:
            answered = {m.tool_call_id for m in history[i + 1 :] if m.role == "tool"}
            content = json.dumps({"error": error}, ensure_ascii=False)
            for call in msg.tool_calls:
                if call.id not in answered:
                    history.append(Message.tool(content, tool_call_id=call.id, name=call.name))
            return
        if msg.role == "user":
            return


async def _stream_reply(
    llm: LLMClient, messages: Sequence[Message], tools: Sequence[ToolSchema] | None, emit: Emit
) -> LLMResponse:
    """Stream one reply, publishing each text delta, and fold it into a response.

    The stream is closed explicitly (``aclose``) on every exit so a cancelled run closes the
    underlying HTTP request and the model server stops generating.
    """
    text: list[str] = []
    calls: list[ToolCall] = []
    usage = Usage()
    finish: str | None = None
    it = llm.stream(messages, tools)
    try:
        async for d in it:
            if d.text:
                text.append(d.text)
                emit("llm_delta", {"text": d.text})
            calls.extend(d.tool_calls)
            if d.usage is not None:
                usage = d.usage
            if d.finish_reason:
                finish = d.finish_reason
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
    return LLMResponse(text="".join(text), tool_calls=calls, usage=usage, finish_reason=finish)
