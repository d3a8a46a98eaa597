"""``ServedLLM``: the workbench's own served model as an ``LLMClient``.

Native tool calls by default: the conversation goes to the server's OpenAI-compatible
``/v1/chat/completions`` with the tools (through ``OpenAICompatLLM``). The server renders them
with the model's tool template (the tiny preset has one), or with its documented fallback prompt
for a template without one, and parses the calls the model makes; a required call is forced
schema-valid by constrained decoding.

The JSON text protocol stays as the fallback for models without a tool template
(``native_tools=False``, or ``await ServedLLM.for_model(...)``, which reads the model's chat
template from the server and decides): the ReAct loop then describes the tools in the prompt and
parses a JSON action from the text, and messages go to ``POST /api/v1/sample`` as chat messages
with tool results as user turns. Either way, closing a stream closes the HTTP request, and the
serving scheduler drops a request whose client went away, so a cancelled run stops the model's
work too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ._messages import Delta, LLMResponse, Message, ToolSchema, Usage
from ._openai_compat import OpenAICompatLLM

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


def _trim(messages: Sequence[Message], max_prompt_chars: int | None) -> list[Message]:
    """Drop the oldest non-system turns beyond ``max_prompt_chars`` (never leaving an orphan
    tool result at the front)."""
    if max_prompt_chars is None:
        return list(messages)
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    budget = max_prompt_chars - sum(len(m.content) for m in system)
    while len(rest) > 1 and sum(len(m.content) for m in rest) > budget:
        rest.pop(0)
    while len(rest) > 1 and rest[0].role == "tool":
        rest.pop(0)
    return system + rest


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
        native_tools: send tools as OpenAI function calls (default) or, when False, let the
            loop use its JSON text protocol.
        tool_choice: with native tools, ``"auto"`` or ``"required"``.
    """

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
        native_tools: bool = True,
        tool_choice: str = "auto",
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.max_prompt_chars = max_prompt_chars
        self.supports_tools = native_tools
        self.tool_choice = tool_choice

    @classmethod
    async def for_model(
        cls, base_url: str | None = None, model: str | None = None, **kw: Any
    ) -> ServedLLM:
        """A ``ServedLLM`` that uses native tools only if the model's chat template renders them.

        Reads the template from ``GET /api/v1/models/{model}/tokenizer``; a model without a tool
        template gets the JSON text protocol.
        """
        llm = cls(base_url, model, **kw)
        async with llm._client() as wb:
            info = await wb.models.tokenizer(await llm._model(wb))
        template = info.chat_template
        llm.supports_tools = bool(template and "tools" in template)
        return llm

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

    async def _native(self) -> OpenAICompatLLM:
        async with self._client() as wb:
            await self._model(wb)
            # The client resolves the URL and key from the environment as everywhere else.
            base, key = wb.base_url, wb.api_key
        assert self.model is not None
        return OpenAICompatLLM(
            base + "/v1",
            self.model,
            api_key=key or "",
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
            tool_choice=self.tool_choice,
        )

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.seed is not None:
            params["seed"] = self.seed
        return params

    async def generate(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> LLMResponse:
        if self.supports_tools:
            llm = await self._native()
            return await llm.generate(_trim(messages, self.max_prompt_chars), tools)
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
        if self.supports_tools:
            llm = await self._native()
            async for d in llm.stream(_trim(messages, self.max_prompt_chars), tools):
                yield d
            return
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
