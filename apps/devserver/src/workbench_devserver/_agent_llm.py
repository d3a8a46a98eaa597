"""The agent's LLM as the dev server wires it: switchable, and able to run on a tiny checkpoint.

Two pieces:

- :class:`SwitchableLLM` forwards to an inner LLM that ``POST /devserver/agent/llm`` can swap at
  run time, so ``workbench demo`` can put the agent on the checkpoint it has just fine-tuned
  without restarting the server (the agent's own app fixes its LLM when it is built).
- :class:`CheckpointLLM` runs the agent on a served tiny model. A tiny preset has a 256-token
  context, far too short for the tool manifest the agent puts in its system prompt, so this
  adapter renders the conversation compactly (:func:`render_prompt`: the question and which tools
  have answered). The demo fine-tunes the model on exactly this rendering, so what the model
  learned and what it is asked are the same text. It does not pretend to be capable: it returns
  whatever the model greedily produces, and the agent's loop judges it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

__all__ = ["CheckpointLLM", "SwitchableLLM", "render_prompt"]


def render_prompt(question: str, answered_tools: Sequence[str] = ()) -> str:
    """The compact prompt a tiny checkpoint sees (and is trained on by the demo)."""
    lines = [f"Question: {question.strip()}"]
    lines.extend(f"Tool {name} answered." for name in answered_tools)
    lines.append("Action:")
    return "\n".join(lines)


def _render_messages(messages: Sequence[Any]) -> str:
    question = ""
    answered: list[str] = []
    for msg in messages:
        role = getattr(msg, "role", None)
        if role == "user":
            question = str(getattr(msg, "content", ""))
            answered = []
        elif role == "tool":
            answered.append(str(getattr(msg, "name", None) or "tool"))
    return render_prompt(question, answered)


class CheckpointLLM:
    """An agent LLM on a served model, sampled greedily through the client SDK.

    Args:
        base_url: the workbench server.
        model: the served model name (a checkpoint's ``model_name`` or a base model).
        api_key: forwarded to the client.
        max_tokens: the longest action the model may write.
    """

    supports_tools = False

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, max_tokens: int = 120
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens

    def describe(self) -> str:
        return f"checkpoint {self.model} (compact prompt, greedy)"

    async def generate(self, messages: Sequence[Any], tools: Sequence[Any] | None = None) -> Any:
        from workbench_agent._messages import LLMResponse, Usage
        from workbench_client import AsyncWorkbench

        prompt = _render_messages(messages)
        async with AsyncWorkbench(base_url=self.base_url, api_key=self.api_key) as wb:
            out = await wb.sampling.sample(
                self.model,
                prompt,
                sampling_params={"max_tokens": self.max_tokens, "temperature": 0.0, "seed": 0},
            )
        seq = out.sequences[0]
        return LLMResponse(
            text=seq.text,
            usage=Usage(input_tokens=out.prompt_tokens or 0, output_tokens=len(seq.tokens)),
            finish_reason=seq.finish_reason,
        )

    async def stream(
        self, messages: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> AsyncIterator[Any]:
        from workbench_agent._messages import Delta

        resp = await self.generate(messages, tools)
        yield Delta(text=resp.text, usage=resp.usage, finish_reason=resp.finish_reason)


class SwitchableLLM:
    """Forwards every call to ``inner``, which can be replaced between runs."""

    def __init__(self, inner: Any, description: str) -> None:
        self.inner = inner
        self.description = description

    @property
    def supports_tools(self) -> bool:
        return bool(getattr(self.inner, "supports_tools", False))

    def switch(self, inner: Any, description: str) -> None:
        self.inner = inner
        self.description = description

    async def generate(self, messages: Sequence[Any], tools: Sequence[Any] | None = None) -> Any:
        return await self.inner.generate(messages, tools)

    def stream(
        self, messages: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> AsyncIterator[Any]:
        return self.inner.stream(messages, tools)  # type: ignore[no-any-return]
