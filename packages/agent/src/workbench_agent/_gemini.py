"""``GeminiLLM``: Gemini through google-genai's async API, with native function calling.

Why these choices:
- Roles map ``assistant -> model``; system messages go to ``system_instruction``; tool results
  become ``functionResponse`` parts of a user turn, paired with the call by name and id.
- Automatic function calling is disabled: the ReAct loop, not the SDK, runs tools (with the
  runner's validation, timeouts, retries and events).
- The SDK's own retry is switched off (``HttpRetryOptions(attempts=1)``) and 429/503 are retried
  once, by core's ``retry_async``, honouring the server's hint: the ``Retry-After`` header or the
  ``google.rpc.RetryInfo`` ``retryDelay`` in the error body.
- The SDK is given an ``httpx.AsyncClient`` so streaming runs over httpx (closing the stream
  closes the HTTP request) rather than aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from workbench_core.retry import RetryDecision, RetryPolicy, parse_retry_after, retry_async

from ._messages import Delta, LLMResponse, Message, ToolCall, ToolSchema, Usage, new_call_id

__all__ = ["GeminiLLM"]

RETRYABLE_STATUS = frozenset({429, 503})


def _retry_info_delay(details: Any) -> float | None:
    """``retryDelay`` ("2s", "0.5s") from a ``google.rpc.RetryInfo`` detail in an error body."""
    error = details.get("error", details) if isinstance(details, dict) else None
    if not isinstance(error, dict):
        return None
    for item in error.get("details") or []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = re.fullmatch(r"\s*([0-9.]+)s\s*", str(item.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None


def classify_gemini_error(exc: BaseException | None, _result: Any) -> RetryDecision:
    """Retry 429 and 503, with the delay the server asked for when it said one."""
    from google.genai import errors

    if not isinstance(exc, errors.APIError) or exc.code not in RETRYABLE_STATUS:
        return RetryDecision(retry=False)
    delay = _retry_info_delay(exc.details)
    headers = getattr(exc.response, "headers", None)
    if headers is not None:
        hinted = parse_retry_after(headers)
        if hinted is not None:
            delay = hinted
    return RetryDecision(retry=True, delay=delay)


class GeminiLLM:
    """Gemini as an ``LLMClient``.

    Args:
        model: the Gemini model id.
        api_key: defaults to ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``.
        base_url: the API endpoint (a local fake in tests).
        max_output_tokens: cap on each reply.
        temperature: sampling temperature, None for the model's default.
        retry: core's policy for 429/503.
        timeout: per-request timeout in seconds.
        sleep: the backoff's sleep (tests record the delays instead of waiting).
    """

    supports_tools = True

    def __init__(
        self,
        model: str = "gemini-2.5-flash",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_output_tokens: int | None = 1024,
        temperature: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 120.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        import httpx
        from google import genai
        from google.genai import types

        key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if not key:
            raise ValueError("api_key is required (or set GEMINI_API_KEY)")
        self.model = model
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.retry = retry or RetryPolicy(max_attempts=4, initial_delay=0.5, max_delay=8.0)
        self._types = types
        self._sleep = sleep
        self._http = httpx.AsyncClient(timeout=timeout)
        options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            httpx_async_client=self._http,
        )
        self._client = genai.Client(api_key=key, http_options=options)

    async def aclose(self) -> None:
        await self._http.aclose()

    # Translation ------------------------------------------------------------------------------

    def _contents(self, messages: Sequence[Message]) -> tuple[str | None, list[Any]]:
        t = self._types
        system: list[str] = []
        contents: list[Any] = []
        for m in messages:
            if m.role == "system":
                system.append(m.content)
            elif m.role == "user":
                contents.append(t.Content(role="user", parts=[t.Part(text=m.content)]))
            elif m.role == "assistant":
                parts = [t.Part(text=m.content)] if m.content else []
                for c in m.tool_calls:
                    parts.append(
                        t.Part(function_call=t.FunctionCall(id=c.id, name=c.name, args=c.args))
                    )
                contents.append(t.Content(role="model", parts=parts or [t.Part(text="")]))
            else:
                try:
                    payload = json.loads(m.content)
                except json.JSONDecodeError:
                    payload = m.content
                response = payload if isinstance(payload, dict) else {"result": payload}
                part = t.Part(
                    function_response=t.FunctionResponse(
                        id=m.tool_call_id, name=m.name or "tool", response=response
                    )
                )
                # Consecutive tool results belong in one user turn, like the calls they answer.
                last = contents[-1] if contents else None
                if (
                    last is not None
                    and last.role == "user"
                    and last.parts
                    and all(p.function_response is not None for p in last.parts)
                ):
                    last.parts.append(part)
                else:
                    contents.append(t.Content(role="user", parts=[part]))
        return ("\n\n".join(system) if system else None), contents

    def _config(self, system: str | None, tools: Sequence[ToolSchema] | None) -> Any:
        t = self._types
        declared = None
        if tools:
            declared = [
                t.Tool(
                    function_declarations=[
                        t.FunctionDeclaration(
                            name=s.name,
                            description=s.description,
                            parameters_json_schema=s.parameters,
                        )
                        for s in tools
                    ]
                )
            ]
        return t.GenerateContentConfig(
            system_instruction=system,
            tools=declared,
            automatic_function_calling=t.AutomaticFunctionCallingConfig(disable=True),
            max_output_tokens=self.max_output_tokens,
            temperature=self.temperature,
        )

    @staticmethod
    def _delta(chunk: Any) -> Delta:
        text: list[str] = []
        calls: list[ToolCall] = []
        finish: str | None = None
        for cand in (chunk.candidates or [])[:1]:
            if cand.finish_reason is not None:
                finish = str(getattr(cand.finish_reason, "value", cand.finish_reason))
            for part in (cand.content.parts if cand.content else None) or []:
                if part.function_call is not None:
                    fc = part.function_call
                    calls.append(
                        ToolCall(id=fc.id or new_call_id(), name=fc.name or "", args=fc.args or {})
                    )
                elif part.text and not part.thought:
                    text.append(part.text)
        usage = None
        meta = chunk.usage_metadata
        if meta is not None:
            usage = Usage(
                input_tokens=meta.prompt_token_count or 0,
                output_tokens=meta.candidates_token_count or 0,
            )
        return Delta(text="".join(text), tool_calls=calls, usage=usage, finish_reason=finish)

    # LLMClient --------------------------------------------------------------------------------

    async def generate(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> LLMResponse:
        system, contents = self._contents(messages)
        config = self._config(system, tools)

        async def once() -> Any:
            return await self._client.aio.models.generate_content(
                model=self.model, contents=contents, config=config
            )

        chunk = await retry_async(
            once, self.retry, classify=classify_gemini_error, sleep=self._sleep
        )
        d = self._delta(chunk)
        return LLMResponse(
            text=d.text,
            tool_calls=d.tool_calls,
            usage=d.usage or Usage(),
            finish_reason=d.finish_reason,
        )

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None = None
    ) -> AsyncIterator[Delta]:
        system, contents = self._contents(messages)
        config = self._config(system, tools)

        async def open_stream() -> tuple[Any, Any]:
            # The SDK sends the request on the first iteration, so a 429 surfaces there: open the
            # stream and read its first chunk under retry. Later chunks are not retried, since a
            # retry after deltas were shown would repeat them.
            chunks = await self._client.aio.models.generate_content_stream(
                model=self.model, contents=contents, config=config
            )
            try:
                head = await anext(chunks)
            except StopAsyncIteration:
                return chunks, None
            except BaseException:
                await _aclose(chunks)
                raise
            return chunks, head

        chunks, head = await retry_async(
            open_stream, self.retry, classify=classify_gemini_error, sleep=self._sleep
        )
        try:
            if head is None:
                return
            yield self._delta(head)
            async for chunk in chunks:
                yield self._delta(chunk)
        finally:
            await _aclose(chunks)


async def _aclose(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
