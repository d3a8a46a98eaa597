"""Chat messages, model responses and the ``LLMClient`` protocol every adapter implements.

Why our own types and not one vendor's: the ReAct loop must run unchanged on Gemini (native
function calls), on the workbench's own tiny model (a JSON action protocol) and on a scripted
double in tests. Each adapter translates these types to its wire format and back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

__all__ = [
    "Delta",
    "LLMClient",
    "LLMResponse",
    "Message",
    "Role",
    "ToolCall",
    "ToolSchema",
    "Usage",
    "collect_stream",
    "new_call_id",
]

Role = Literal["system", "user", "assistant", "tool"]


def new_call_id() -> str:
    """An opaque id tying a tool result back to the call that asked for it."""
    return "call_" + uuid.uuid4().hex[:16]


class ToolCall(BaseModel):
    """One request from the model to run a tool with arguments."""

    id: str = Field(default_factory=new_call_id)
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One turn of a conversation.

    ``tool_calls`` is set on assistant turns that asked for tools; ``tool_call_id`` and ``name``
    are set on tool turns so adapters can pair each result with its call.
    """

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls(role="assistant", content=content, tool_calls=list(tool_calls))

    @classmethod
    def tool(cls, content: str, *, tool_call_id: str, name: str) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)


class Usage(BaseModel):
    """Token counts as reported by the model server (0 when it reports none)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class LLMResponse(BaseModel):
    """A complete model answer: text and/or tool calls, with usage."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None


class Delta(BaseModel):
    """One streamed increment. Text accumulates; tool calls arrive whole (as Gemini sends them)."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None


class ToolSchema(BaseModel):
    """What a model is told about a tool: name, description, JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


@runtime_checkable
class LLMClient(Protocol):
    """The one interface the ReAct loop talks to.

    ``supports_tools`` says whether the model does native function calling; when False the loop
    describes tools in the prompt and parses a JSON action from the text instead.
    """

    supports_tools: bool

    async def generate(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> LLMResponse:
        """Answer the conversation in one piece."""
        ...

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> AsyncIterator[Delta]:
        """Answer the conversation as deltas; closing the iterator stops the model's work."""
        ...


async def collect_stream(deltas: AsyncIterator[Delta]) -> LLMResponse:
    """Fold a delta stream into one ``LLMResponse`` (what ``generate`` would have returned)."""
    text: list[str] = []
    calls: list[ToolCall] = []
    usage = Usage()
    finish: str | None = None
    async for d in deltas:
        text.append(d.text)
        calls.extend(d.tool_calls)
        if d.usage is not None:
            usage = d.usage
        if d.finish_reason:
            finish = d.finish_reason
    return LLMResponse(text="".join(text), tool_calls=calls, usage=usage, finish_reason=finish)
