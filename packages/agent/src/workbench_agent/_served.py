"""``ServedLLM``: the workbench's own served model as an ``LLMClient``, through workbench-client.

The tiny served models have no native function calling, so ``supports_tools`` is False and the
ReAct loop uses its JSON action protocol. Messages go to ``POST /api/v1/sample`` as chat messages
(the server applies the model's chat template); tool results become user turns, since chat
templates of small models rarely know a ``tool`` role. Streaming uses the sample endpoint's SSE;
closing the stream closes the HTTP request, and the serving scheduler drops a request whose client
went away, so a cancelled run stops the model's work too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ._messages import Delta, LLMResponse, Message, ToolSchema, Usage

__all__ = ["ServedLLM"]


def to_chat(
    messages: Sequence[Message], max_prompt_chars: int | None = None
) -> list[dict[str, str]]:
    """Render our messages as the serving API's chat messages.

    With ``max_prompt_chars``, the oldest non-system turns are dropped until the rest fit: a small
    model's context is short and the newest turns matter most.
    """
    chat: list[dict[str, str]] = []
    for m in messages:
        if m.role == "tool":
            chat.append({"role": "user", "content": f"Observation from {m.name}: {m.content}"})
        elif m.role == "assistant" and not m.content and m.tool_calls:
            calls = ", ".join(f"{c.name}({c.args})" for c in m.tool_calls)
            chat.append({"role": "assistant", "content": f"Calling {calls}"})
        else:
            chat.append({"role": m.role, "content": m.content})
    # Templates generally expect alternating turns; merge consecutive turns of one role.
    merged: list[dict[str, str]] = []
    for c in chat:
        if merged and merged[-1]["role"] == c["role"] and c["role"] != "system":
            merged[-1] = {"role": c["role"], "content": merged[-1]["content"] + "\n" + c["content"]}
        else:
            merged.append(c)
    if max_prompt_chars is not None:
        system = [c for c in merged if c["role"] == "system"]
        rest = [c for c in merged if c["role"] != "system"]
        budget = max_prompt_chars - sum(len(c["content"]) for c in system)
        while len(rest) > 1 and sum(len(c["content"]) for c in rest) > budget:
            rest.pop(0)
        merged = system + rest
    return merged


class ServedLLM:
    """A served text model as an ``LLMClient``.

    Args:
        base_url: the workbench server (default ``WORKBENCH_BASE_URL``).
        model: the served model; default: the first text model the server lists.
        api_key: default ``WORKBENCH_API_KEY``.
        max_tokens: cap on each reply.
        temperature: sampling temperature.
        seed: sampling seed (reproducible runs).
        max_prompt_chars: drop the oldest turns beyond this many characters.
    """

    supports_tools = False

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        *,
        api_key: str | None = None,
        max_tokens: int = 128,
        temperature: float = 0.7,
        seed: int | None = None,
        max_prompt_chars: int | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.max_prompt_chars = max_prompt_chars

    def describe(self) -> str:
        return f"served model {self.model or '(first text model)'}"

    def _client(self) -> Any:
        from workbench_client import AsyncWorkbench

        return AsyncWorkbench(base_url=self.base_url, api_key=self.api_key)

    async def _model(self, wb: Any) -> str:
        if self.model is None:
            for info in await wb.models.list():
                if info.kind == "text":
                    self.model = str(info.name)
                    break
            else:
                raise RuntimeError("the server lists no text model to run the agent on")
        return self.model

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.seed is not None:
            params["seed"] = self.seed
        return params

    async def generate(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> LLMResponse:
        async with self._client() as wb:
            model = await self._model(wb)
            out = await wb.sampling.sample(
                model, to_chat(messages, self.max_prompt_chars), sampling_params=self._params()
            )
        seq = out.sequences[0]
        return LLMResponse(
            text=seq.text,
            usage=Usage(input_tokens=out.prompt_tokens, output_tokens=len(seq.tokens)),
            finish_reason=seq.finish_reason,
        )

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> AsyncIterator[Delta]:
        async with self._client() as wb:
            model = await self._model(wb)
            stream = await wb.sampling.stream(
                model, to_chat(messages, self.max_prompt_chars), sampling_params=self._params()
            )
            try:
                async for ev in stream:
                    if ev.index == 0 and ev.text:
                        yield Delta(text=ev.text)
                final = stream.final
            finally:
                # Closing the HTTP stream is what tells the server to drop the request.
                await stream.aclose()
        if final is not None:
            seq = final.sequences[0]
            yield Delta(
                usage=Usage(input_tokens=final.prompt_tokens, output_tokens=len(seq.tokens)),
                finish_reason=seq.finish_reason,
            )
