"""``OpenAICompatLLM``: the agent on any OpenAI-compatible chat endpoint, with native tool calls.

Speaks ``POST {base_url}/chat/completions`` with plain httpx (no vendor SDK to install): our own
``/v1``, vLLM, SGLang or a hosted API. Tools go out as OpenAI ``tools``; the reply's
``tool_calls`` come back as ``ToolCall``s, so the ReAct loop uses native function calling. Tool
results go back as ``tool`` messages tied to their call ids. Streaming reads the SSE chunk
stream: text deltas as they come, tool-call fragments assembled and handed over whole at the
end (the ``Delta`` contract), usage from ``stream_options.include_usage``. Closing the stream
closes the HTTP request, which a server takes as the client leaving.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ._messages import Delta, LLMResponse, Message, ToolCall, ToolSchema, Usage

__all__ = ["OpenAICompatError", "OpenAICompatLLM", "to_openai_messages", "to_openai_tools"]


class OpenAICompatError(RuntimeError):
    """The endpoint answered with an error (``status``, and its message and ``param``)."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.param = param


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Our messages as OpenAI chat messages (calls with JSON-text arguments, tool results)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": m.content or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.args)},
                        }
                        for c in m.tool_calls
                    ],
                }
            )
        elif m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def to_openai_tools(tools: Sequence[ToolSchema]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            },
        }
        for t in tools
    ]


def _call(call_id: str | None, name: str, arguments: str) -> ToolCall:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        # Kept, not dropped: the tool runner rejects it with an error the model can read.
        args = {"_unparsed_arguments": arguments}
    if not isinstance(args, dict):
        args = {"_unparsed_arguments": arguments}
    return ToolCall(id=call_id, name=name, args=args) if call_id else ToolCall(name=name, args=args)


def _usage(data: dict[str, Any] | None) -> Usage:
    if not data:
        return Usage()
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
    )


class OpenAICompatLLM:
    """An OpenAI-compatible chat endpoint as an ``LLMClient``.

    Args:
        base_url: the API root including ``/v1`` (default ``OPENAI_BASE_URL``).
        model: the model name the endpoint serves.
        api_key: sent as a bearer token (default ``OPENAI_API_KEY``; none if unset).
        max_tokens: cap on each reply (``max_completion_tokens``); None leaves the server's.
        temperature: sampling temperature; None leaves the server's.
        seed: sampling seed, for servers that honour it.
        tool_choice: ``"auto"`` (the model decides), ``"required"`` (every turn calls a tool),
            or ``"none"``.
        parallel_tool_calls: allow several calls in one turn (None: the server's default).
        native_tools: False makes the loop use its JSON text protocol instead of ``tools``.
        timeout: seconds per request.
        extra_body: more request fields (e.g. vLLM's ``top_k``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str = "",
        *,
        api_key: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        tool_choice: str = "auto",
        parallel_tool_calls: bool | None = None,
        native_tools: bool = True,
        timeout: float = 120.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ValueError("base_url is required (or set OPENAI_BASE_URL)")
        if not model:
            raise ValueError("model is required")
        self.base_url = url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.tool_choice = tool_choice
        self.parallel_tool_calls = parallel_tool_calls
        self.supports_tools = native_tools
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})

    def describe(self) -> str:
        return f"{self.model} at {self.base_url}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def body(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None, stream: bool
    ) -> dict[str, Any]:
        """The request body for ``messages`` (and ``tools``, sent only when there are some)."""
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(messages)}
        if tools:
            body["tools"] = to_openai_tools(tools)
            body["tool_choice"] = self.tool_choice
            if self.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = self.parallel_tool_calls
        if self.max_tokens is not None:
            body["max_completion_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.seed is not None:
            body["seed"] = self.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body

    @staticmethod
    def _raise_for(status: int, payload: Any) -> None:
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict):
            raise OpenAICompatError(status, str(err.get("message", err)), err.get("param"))
        raise OpenAICompatError(status, str(payload)[:500])

    async def generate(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> LLMResponse:
        import httpx

        async with httpx.AsyncClient(timeout=self.timeout) as client:
            r = await client.post(
                f"{self.base_url}/chat/completions",
                json=self.body(messages, tools, stream=False),
                headers=self._headers(),
            )
        try:
            data = r.json()
        except ValueError:
            data = r.text
        if r.status_code >= 400:
            self._raise_for(r.status_code, data)
        choice = data["choices"][0]
        msg = choice.get("message") or {}
        calls = [
            _call(c.get("id"), c["function"]["name"], c["function"].get("arguments") or "")
            for c in msg.get("tool_calls") or []
        ]
        return LLMResponse(
            text=msg.get("content") or "",
            tool_calls=calls,
            usage=_usage(data.get("usage")),
            finish_reason=choice.get("finish_reason"),
        )

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> AsyncIterator[Delta]:
        import httpx

        parts: dict[int, dict[str, Any]] = {}
        usage: Usage | None = None
        finish: str | None = None
        async with (
            httpx.AsyncClient(timeout=self.timeout) as client,
            client.stream(
                "POST",
                f"{self.base_url}/chat/completions",
                json=self.body(messages, tools, stream=True),
                headers=self._headers(),
            ) as r,
        ):
            if r.status_code >= 400:
                raw = await r.aread()
                try:
                    payload: Any = json.loads(raw)
                except ValueError:
                    payload = raw.decode(errors="replace")
                self._raise_for(r.status_code, payload)
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk and "choices" not in chunk:
                    self._raise_for(500, chunk)  # failed after the 200 went out
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    if choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        yield Delta(text=delta["content"])
                    for tc in delta.get("tool_calls") or []:
                        part = parts.setdefault(
                            int(tc.get("index", 0)), {"id": None, "name": "", "arguments": ""}
                        )
                        if tc.get("id"):
                            part["id"] = tc["id"]
                        fn = tc.get("function") or {}
                        if fn.get("name"):
                            part["name"] = fn["name"]
                        part["arguments"] += fn.get("arguments") or ""
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        calls = [_call(p["id"], p["name"], p["arguments"]) for _, p in sorted(parts.items())]
        yield Delta(tool_calls=calls, usage=usage, finish_reason=finish)
