"""``ScriptedLLM``: a deterministic test double that plays a script and records what it was sent.

Why: agent tests must prove the loop's behaviour (tool calls, malformed output, cancellation)
without a network or a sampled model. Each script entry is one model turn.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ._messages import Delta, LLMResponse, Message, ToolCall, ToolSchema, Usage

__all__ = ["ScriptExhausted", "ScriptStep", "ScriptedLLM"]

# One model turn: plain text, a full response, a list of deltas, an exception to raise, or a
# function of the conversation returning one of those (or an async iterator of deltas).
ScriptStep = str | LLMResponse | list[Delta] | BaseException | Callable[[list[Message]], Any]


class ScriptExhausted(AssertionError):
    """The loop asked for more model turns than the test scripted."""


class ScriptedLLM:
    """Plays ``script`` one entry per ``generate``/``stream`` call.

    Args:
        script: the turns, in order.
        supports_tools: whether to present itself as a native function-calling model.
        chunk_size: how many characters of a text turn each streamed delta carries.
        delay: seconds to sleep before each streamed delta (lets tests cancel mid-stream).

    Attributes:
        calls: the messages of every call, copied, in order.
        tools_seen: the tool schemas of every call.
    """

    def __init__(
        self,
        script: Sequence[ScriptStep],
        *,
        supports_tools: bool = True,
        chunk_size: int = 4,
        delay: float = 0.0,
    ) -> None:
        self._script = list(script)
        self.supports_tools = supports_tools
        self.chunk_size = max(1, chunk_size)
        self.delay = delay
        self.calls: list[list[Message]] = []
        self.tools_seen: list[list[ToolSchema]] = []
        self.closed_streams = 0

    @property
    def remaining(self) -> int:
        return len(self._script)

    def _next(self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None) -> Any:
        self.calls.append([m.model_copy(deep=True) for m in messages])
        self.tools_seen.append(list(tools or []))
        if not self._script:
            raise ScriptExhausted(f"script exhausted after {len(self.calls) - 1} calls")
        step = self._script.pop(0)
        if callable(step) and not isinstance(step, BaseException):
            step = step(list(messages))
        if isinstance(step, BaseException):
            raise step
        return step

    @staticmethod
    def _usage(text: str) -> Usage:
        return Usage(input_tokens=1, output_tokens=max(1, len(text.split())))

    async def generate(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> LLMResponse:
        step = self._next(messages, tools)
        if inspect.isawaitable(step):
            step = await step
        if isinstance(step, str):
            return LLMResponse(text=step, usage=self._usage(step), finish_reason="stop")
        if isinstance(step, LLMResponse):
            return step
        if isinstance(step, list):
            text = "".join(d.text for d in step)
            calls = [c for d in step for c in d.tool_calls]
            return LLMResponse(text=text, tool_calls=calls, usage=self._usage(text))
        raise TypeError(f"cannot generate from script step {step!r}")

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> AsyncIterator[Delta]:
        step = self._next(messages, tools)
        if inspect.isawaitable(step):
            step = await step
        try:
            if hasattr(step, "__aiter__"):
                async for d in step:
                    yield d
                return
            for d in self._as_deltas(step):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield d
        finally:
            self.closed_streams += 1

    def _as_deltas(self, step: Any) -> list[Delta]:
        if isinstance(step, list):
            return step
        if isinstance(step, str):
            step = LLMResponse(text=step, usage=self._usage(step), finish_reason="stop")
        if not isinstance(step, LLMResponse):
            raise TypeError(f"cannot stream script step {step!r}")
        n = self.chunk_size
        out = [Delta(text=step.text[i : i + n]) for i in range(0, len(step.text), n)]
        out.append(Delta(tool_calls=step.tool_calls, usage=step.usage, finish_reason="stop"))
        return out


def tool_call(name: str, **args: Any) -> LLMResponse:
    """Shorthand for a scripted native tool-call turn."""
    return LLMResponse(tool_calls=[ToolCall(name=name, args=args)], usage=Usage(output_tokens=1))
