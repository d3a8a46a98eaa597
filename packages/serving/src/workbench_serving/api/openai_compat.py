"""OpenAI-compatible API under ``/v1`` so the official ``openai`` package works unchanged.

Covers models, completions, chat completions (with streaming in OpenAI's chunk format ending in
``data: [DONE]``, and ``image_url`` data-URL parts routed to the vision model) and
images/generations (``b64_json``). Saved LoRA checkpoints are listed as models and usable by
name, as vLLM serves LoRA modules. Errors use OpenAI's body so the package raises its own classes.

Chat completions take ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` and
``response_format`` (``json_object``, ``json_schema``), enforced by constrained decoding (see
``api/structured.py``). Every request field is either acted on or refused with a 400 naming it;
the serving README lists which is which.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench_core import sse
from workbench_core.protocol import ResponseFormat
from workbench_serving.api._common import (
    check_image_limits,
    check_length,
    context_info,
    decode_image,
    encode_chat,
    encode_prompt,
    encode_text,
    run_item,
    state_of,
)
from workbench_serving.api.errors import APIError, error_payload, not_found, to_api_error
from workbench_serving.api.native import count_tokens, resolve_text_model, stream_item
from workbench_serving.api.state import ServedModel, ServingState
from workbench_serving.api.structured import (
    ParsedCall,
    ToolCallIn,
    ToolCallStreamer,
    ToolChoice,
    ToolDef,
    ToolPlan,
    call_text,
    check_constraint,
    fallback_tools_prompt,
    loads_or_text,
    parse_tool_calls,
    plan_tools,
    response_format_spec,
)
from workbench_serving.engines.base import (
    EngineError,
    ImageItem,
    SampleItem,
    SampleResult,
    VisionItem,
)
from workbench_serving.engines.constraints import ConstraintSpec

router = APIRouter(prefix="/v1", tags=["openai"])

_MAX_STOP = 4


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    request_id: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIError} for code in (400, 401, 404, 409, 413, 429, 503, 504)
}
router.responses = ERRORS


# ---------------------------------------------------------------- models


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "workbench"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _cards(st: ServingState) -> list[ModelCard]:
    now = int(st.started_at)
    cards = [ModelCard(id=m.name, created=now, root=m.name) for m in st.models.values()]
    cards += [
        ModelCard(id=a.model_name, created=now, root=a.model_name, parent=a.base_model)
        for a in st.adapters.values()
    ]
    return cards


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    return ModelList(data=_cards(state_of(request)))


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, request: Request) -> ModelCard:
    for card in _cards(state_of(request)):
        if card.id == model_id:
            return card
    raise not_found("model", model_id, param="model")


# ---------------------------------------------------------------- shared request pieces


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


def _reject(name: str, why: str) -> APIError:
    return APIError(400, f"{name}: {why}", param=name, code="unsupported_parameter")


class _Base(BaseModel):
    """Fields shared by completions and chat completions.

    Every field OpenAI defines is either acted on or declared here and rejected with a 400
    naming it when set to anything but its no-op value; unknown fields are a 400 too
    (``extra="forbid"``). The serving README lists them.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=100_000)  # vLLM's extension
    n: int | None = Field(default=None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Declared so that a request using them is refused by name rather than silently ignored.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    service_tier: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > _MAX_STOP:
            raise ValueError(f"at most {_MAX_STOP} stop sequences")
        return v

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def check_unsupported(self) -> None:
        """400 naming the first field set to something this server cannot do."""
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                raise _reject(name, "not supported (only 0)")
        if self.logit_bias:
            raise _reject("logit_bias", "not supported")
        if self.service_tier not in (None, "auto", "default"):
            raise _reject("service_tier", "only 'auto' or 'default'")
        if self.stream_options is not None and not self.stream:
            raise _reject("stream_options", "only allowed with stream: true")

    @property
    def num(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Base):
    prompt: str | list[int] = Field(description="Text or token ids (one prompt per request).")
    max_tokens: int | None = Field(default=16, ge=1, le=4096)
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[int]) -> str | list[int]:
        if isinstance(v, str) and not v:
            raise ValueError("prompt must not be empty")
        if isinstance(v, list) and (not v or any(t < 0 for t in v)):
            raise ValueError("prompt token ids must be a non-empty list of ids >= 0")
        return v

    def check_unsupported(self) -> None:
        super().check_unsupported()
        if self.suffix:
            raise _reject("suffix", "insertion is not supported")
        if self.best_of not in (None, 1):
            raise _reject("best_of", "only 1")
        if self.logprobs:
            raise _reject("logprobs", "only 0 (the sampled tokens); top alternatives are not kept")
        if self.logprobs is not None and self.stream:
            raise _reject("logprobs", "not available when streaming")


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    # Present (as null) when a client echoes a reply back into the history.
    annotations: list[Any] | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None


class ChatCompletionRequest(_Base):
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    tools: list[ToolDef] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Declared to be refused by name (see check_unsupported).
    store: bool | None = None
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    def check_unsupported(self) -> None:
        super().check_unsupported()
        if self.store:
            raise _reject("store", "stored completions are not supported")
        if self.metadata:
            raise _reject("metadata", "only used with store, which is not supported")
        if self.modalities not in (None, ["text"]):
            raise _reject("modalities", "only ['text']")
        for name in ("audio", "prediction", "web_search_options", "prompt_cache_key"):
            if getattr(self, name) is not None:
                raise _reject(name, "not supported")
        if self.reasoning_effort is not None or self.verbosity is not None:
            which = "reasoning_effort" if self.reasoning_effort is not None else "verbosity"
            raise _reject(which, "not supported (no reasoning models are served)")
        if self.functions is not None or self.function_call is not None:
            which = "functions" if self.functions is not None else "function_call"
            raise _reject(which, "deprecated; use tools and tool_choice")
        if self.top_logprobs:
            raise _reject("top_logprobs", "only 0 (top alternatives are not kept)")
        if self.top_logprobs is not None and not self.logprobs:
            raise _reject("top_logprobs", "needs logprobs: true")
        if self.logprobs and self.stream:
            raise _reject("logprobs", "not available when streaming")
        for i, m in enumerate(self.messages):
            if m.tool_calls and m.role != "assistant":
                raise _reject(f"messages.{i}.tool_calls", "only assistant messages make calls")
            if m.role == "tool" and not m.tool_call_id:
                raise APIError(
                    400,
                    f"messages.{i}.tool_call_id: a tool message needs the id of its call",
                    param=f"messages.{i}.tool_call_id",
                )
            if m.refusal is not None and m.role != "assistant":
                raise _reject(f"messages.{i}.refusal", "only on assistant messages")
            if m.audio is not None or m.function_call is not None:
                which = "audio" if m.audio is not None else "function_call"
                raise _reject(f"messages.{i}.{which}", "not supported")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[dict[str, Any]] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


def _finish(reason: str) -> str:
    return "stop" if reason == "cancelled" else reason


def _usage(result: SampleResult) -> Usage:
    completion = sum(len(s.tokens) for s in result.sequences)
    return Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=completion,
        total_tokens=result.prompt_tokens + completion,
    )


def _sample_item(
    served: ServedModel,
    req: _Base,
    tokens: list[int],
    adapter: str | None,
    max_tokens: int,
    constraint: ConstraintSpec | None = None,
) -> SampleItem:
    check_length(served, len(tokens), max_tokens, "max_tokens")
    return SampleItem(
        prompt_tokens=tokens,
        max_tokens=max_tokens,
        num_samples=req.num,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        stop=req.stop_list(),
        seed=req.seed,
        adapter=adapter,
        constraint=constraint,
    )


def _sse_json(obj: BaseModel | dict[str, Any]) -> bytes:
    data = obj.model_dump(exclude_none=False) if isinstance(obj, BaseModel) else obj
    return sse.encode(data)


_DONE = b"data: [DONE]\n\n"


def _stream_error(request: Request, exc: BaseException) -> bytes:
    err = to_api_error(exc)
    return sse.encode(
        error_payload(
            getattr(request.state, "request_id", None),
            err.status,
            err.message,
            type=err.type,
            param=err.param,
            code=err.code,
        )
    )


def _token_strings(served: ServedModel, tokens: list[int]) -> list[str]:
    decode = getattr(served.engine, "decode", None)
    if decode is None:
        return [str(t) for t in tokens]
    return [str(decode([t])) for t in tokens]


# ---------------------------------------------------------------- completions


@router.post("/completions", response_model=Completion)
async def completions(req: CompletionRequest, request: Request) -> Any:
    req.check_unsupported()
    st = state_of(request)
    served, adapter = resolve_text_model(st, req.model)
    if isinstance(req.prompt, list):
        from workbench_core.protocol import ModelInput

        tokens = encode_prompt(served, ModelInput.from_ints(req.prompt))
    else:
        tokens = encode_text(served, req.prompt)
    max_tokens = req.max_tokens or 16
    item = _sample_item(served, req, tokens, adapter, max_tokens)
    cid = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    prefix = req.prompt if (req.echo and isinstance(req.prompt, str)) else ""

    if req.stream:

        async def events() -> AsyncIterator[bytes]:
            try:
                if prefix:
                    for i in range(req.num):
                        yield _sse_json(
                            Completion(
                                id=cid,
                                created=created,
                                model=req.model,
                                choices=[
                                    CompletionChoice(index=i, text=prefix, finish_reason=None)
                                ],
                            )
                        )
                async for kind, value in stream_item(request, served, item):
                    if kind == "token":
                        chunk = Completion(
                            id=cid,
                            created=created,
                            model=req.model,
                            choices=[
                                CompletionChoice(
                                    index=value.index, text=value.text, finish_reason=None
                                )
                            ],
                        )
                        yield _sse_json(chunk)
                    else:
                        count_tokens(st, req.model, value)
                        chunk = Completion(
                            id=cid,
                            created=created,
                            model=req.model,
                            choices=[
                                CompletionChoice(
                                    index=i, text="", finish_reason=_finish(s.finish_reason)
                                )
                                for i, s in enumerate(value.sequences)
                            ],
                        )
                        yield _sse_json(chunk)
                        if req.include_usage:
                            yield _sse_json(
                                Completion(
                                    id=cid,
                                    created=created,
                                    model=req.model,
                                    choices=[],
                                    usage=_usage(value),
                                )
                            )
            except Exception as exc:
                yield _stream_error(request, exc)
            yield _DONE

        return StreamingResponse(events(), media_type="text/event-stream")

    result: SampleResult = await run_item(request, served.scheduler, item)
    count_tokens(st, req.model, result)
    choices = []
    for i, s in enumerate(result.sequences):
        logprobs = None
        if req.logprobs is not None:
            strings = _token_strings(served, s.tokens)
            offsets, pos = [], len(prefix)
            for piece in strings:
                offsets.append(pos)
                pos += len(piece)
            logprobs = CompletionLogprobs(
                tokens=strings, token_logprobs=list(s.logprobs), text_offset=offsets
            )
        choices.append(
            CompletionChoice(
                index=i,
                text=prefix + s.text,
                logprobs=logprobs,
                finish_reason=_finish(s.finish_reason),
            )
        )
    return Completion(
        id=cid, created=created, model=req.model, choices=choices, usage=_usage(result)
    )


# ---------------------------------------------------------------- chat completions


def _split_content(msg: ChatMessageIn, index: int) -> tuple[str, list[str]]:
    """(text, image data URLs) of one message."""
    if msg.content is None:
        return "", []
    if isinstance(msg.content, str):
        return msg.content, []
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(msg.content):
        if part.type == "text":
            if part.text is None:
                raise APIError(
                    400,
                    f"messages.{index}.content.{j}.text is required for a text part",
                    param=f"messages.{index}.content.{j}.text",
                )
            texts.append(part.text)
        else:
            if part.image_url is None:
                raise APIError(
                    400,
                    f"messages.{index}.content.{j}.image_url is required for an image_url part",
                    param=f"messages.{index}.content.{j}.image_url",
                )
            if part.image_url.detail not in (None, "auto"):
                raise _reject(
                    f"messages.{index}.content.{j}.image_url.detail", "only 'auto' (one resolution)"
                )
            images.append(part.image_url.url)
    return "\n".join(texts), images


async def _chat_vision(
    request: Request,
    st: ServingState,
    req: ChatCompletionRequest,
    texts: list[tuple[str, str]],
    images: list[tuple[str, str]],
    max_tokens: int,
) -> Any:
    served = st.models.get(req.model)
    if served is None or served.kind != "vision":
        served = st.first_of_kind("vision")
    if served is None:
        raise APIError(
            400, "messages: image parts need a vision model and none is served", param="messages"
        )
    served = st.ensure_ready(served)
    if req.num != 1:
        raise APIError(400, "n: image chat supports n=1 only", param="n")
    for name in ("tools", "response_format", "logprobs"):
        if getattr(req, name):
            raise _reject(name, "not supported for image chat")
    if req.stop or req.top_k:
        raise _reject("stop" if req.stop else "top_k", "not supported for image chat")
    pil = [decode_image(url, param) for param, url in images]
    prompt = "\n".join(t for _, t in texts if t) or "Describe the image."
    item = VisionItem(
        images=pil,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        seed=req.seed,
    )
    result = await run_item(request, served.scheduler, item)
    st.metrics.tokens.labels(served.name, "completion").inc(len(result.tokens))
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    usage = Usage(
        prompt_tokens=0, completion_tokens=len(result.tokens), total_tokens=len(result.tokens)
    )
    if req.stream:

        async def events() -> AsyncIterator[bytes]:
            base = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
            }
            yield sse.encode(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": result.text},
                            "finish_reason": None,
                        }
                    ],
                }
            )
            yield sse.encode(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {}, "finish_reason": _finish(result.finish_reason)}
                    ],
                }
            )
            if req.include_usage:
                yield sse.encode({**base, "choices": [], "usage": usage.model_dump()})
            yield _DONE

        return StreamingResponse(events(), media_type="text/event-stream")
    return ChatCompletion(
        id=cid,
        created=created,
        model=req.model,
        choices=[
            ChatChoice(
                index=0,
                message=AssistantMessage(content=result.text),
                finish_reason=_finish(result.finish_reason),
            )
        ],
        usage=usage,
    )


def _chat_messages(req: ChatCompletionRequest, plan: ToolPlan) -> list[dict[str, Any]]:
    """The request's messages as chat-template input, with the history's tool calls.

    Templates that render tools get ``tool_calls`` (arguments as objects) and ``tool``
    messages as Hugging Face templates expect them; others get the fallback: calls written in
    the reply format the model is asked for, and a system turn describing the tools.
    """
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        text, _ = _split_content(m, i)
        role = "system" if m.role == "developer" else m.role
        msg: dict[str, Any] = {"role": role, "content": text}
        if m.tool_calls:
            calls = [(c.function.name, loads_or_text(c.function.arguments)) for c in m.tool_calls]
            if plan.native_template:
                msg["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": n, "arguments": a},
                    }
                    for c, (n, a) in zip(m.tool_calls, calls, strict=True)
                ]
            else:
                msg["content"] = (text + "\n" if text else "") + call_text(calls, plan)
        if m.role == "tool":
            msg["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            msg["name"] = m.name
        messages.append(msg)
    if plan.mode != "off" and not plan.native_template:
        manifest = fallback_tools_prompt(plan)
        if messages and messages[0]["role"] == "system":
            messages[0] = {**messages[0], "content": messages[0]["content"] + "\n\n" + manifest}
        else:
            messages.insert(0, {"role": "system", "content": manifest})
    return messages


def _encode_chat_request(
    served: ServedModel, req: ChatCompletionRequest, plan: ToolPlan
) -> list[int]:
    messages = _chat_messages(req, plan)
    tools = (
        [t.model_dump(exclude_none=True) for t in plan.tools]
        if plan.native_template and plan.mode != "off"
        else None
    )
    try:
        return encode_chat(served, messages, tools)
    except EngineError:
        if plan.native_template or not any(m["role"] == "tool" for m in messages):
            raise
    # The fallback's last resort: a template that rejects the tool role reads results as user
    # turns.
    names = {c.id: c.function.name for m in req.messages for c in (m.tool_calls or [])}
    for i, m in enumerate(messages):
        if m["role"] == "tool":
            name = names.get(m.get("tool_call_id") or "", "tool")
            messages[i] = {"role": "user", "content": f"Result of {name}: {m.get('content', '')}"}
    return encode_chat(served, messages, None)


def _reply(
    served: ServedModel, text: str, finish: str, plan: ToolPlan
) -> tuple[str | None, list[ParsedCall] | None, str]:
    """(content, tool calls, finish_reason) of one generated sequence."""
    calls: list[ParsedCall] | None = None
    if plan.forced:
        streamer = ToolCallStreamer()
        streamer.feed(text)
        calls = streamer.complete(plan)
    elif plan.mode == "auto":
        calls = parse_tool_calls(text, plan)
    if calls:
        return None, calls, "tool_calls"
    return text, None, _finish(finish)


def _default_max_tokens(served: ServedModel, prompt_len: int, constrained: bool) -> int:
    # A grammar-bound reply (a call, a schema) is longer than a chat turn and must be complete.
    wanted = 256 if constrained else 64
    ctx = context_info(served).get("context_length")
    if isinstance(ctx, int) and ctx - prompt_len >= 1:
        return min(wanted, ctx - prompt_len)
    return wanted


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
    req.check_unsupported()
    st = state_of(request)
    explicit_max = req.max_completion_tokens or req.max_tokens
    texts: list[tuple[str, str]] = []
    images: list[tuple[str, str]] = []
    for i, m in enumerate(req.messages):
        text, urls = _split_content(m, i)
        texts.append((m.role, text))
        images += [(f"messages.{i}.content.image_url", u) for u in urls]
    target = st.models.get(req.model)
    if images or (target is not None and target.kind == "vision"):
        return await _chat_vision(request, st, req, texts, images, explicit_max or 64)

    served, adapter = resolve_text_model(st, req.model)
    fmt = response_format_spec(req.response_format)
    response_schema: dict[str, Any] | None = None
    if fmt is not None:
        await check_constraint(served, fmt)
        if fmt.kind == "json_schema":
            response_schema = fmt.value
        elif fmt.kind == "json_object":
            response_schema = {"type": "object"}
    plan = await plan_tools(
        served, req.tools, req.tool_choice, req.parallel_tool_calls, response_schema
    )
    constraint = plan.spec if plan.spec is not None else fmt
    tokens = _encode_chat_request(served, req, plan)
    if not tokens:
        raise APIError(400, "messages: the conversation encodes to no tokens", param="messages")
    max_tokens = explicit_max or _default_max_tokens(served, len(tokens), constraint is not None)
    item = _sample_item(served, req, tokens, adapter, max_tokens, constraint)
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if req.stream:
        return StreamingResponse(
            _chat_events(request, st, served, req, item, plan, cid, created),
            media_type="text/event-stream",
        )

    result: SampleResult = await run_item(request, served.scheduler, item)
    count_tokens(st, req.model, result)
    choices: list[ChatChoice] = []
    for i, s in enumerate(result.sequences):
        content, calls, finish = _reply(served, s.text, s.finish_reason, plan)
        logprobs = None
        if req.logprobs:
            strings = _token_strings(served, s.tokens)
            logprobs = ChoiceLogprobs(
                content=[
                    TokenLogprob(token=t, logprob=lp, bytes=list(t.encode()))
                    for t, lp in zip(strings, s.logprobs, strict=True)
                ]
            )
        choices.append(
            ChatChoice(
                index=i,
                message=AssistantMessage(
                    content=content,
                    tool_calls=[
                        ToolCallOut(
                            id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments)
                        )
                        for c in calls
                    ]
                    if calls
                    else None,
                ),
                finish_reason=finish,
                logprobs=logprobs,
            )
        )
    return ChatCompletion(
        id=cid, created=created, model=req.model, choices=choices, usage=_usage(result)
    )


def _call_deltas(calls: list[ParsedCall]) -> list[dict[str, Any]]:
    """Whole calls as stream deltas: a header with id and name, then the arguments."""
    out: list[dict[str, Any]] = []
    for k, c in enumerate(calls):
        out.append(
            {
                "index": k,
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": ""},
            }
        )
        out.append({"index": k, "function": {"arguments": c.arguments}})
    return out


async def _chat_events(
    request: Request,
    st: ServingState,
    served: ServedModel,
    req: ChatCompletionRequest,
    item: SampleItem,
    plan: ToolPlan,
    cid: str,
    created: int,
) -> AsyncIterator[bytes]:
    """OpenAI's chunk stream: a role chunk, content or ``tool_calls`` deltas, a finish chunk.

    A forced call streams as it is generated (header once the name is complete, then argument
    fragments). Under ``tool_choice: auto`` a reply that starts like a call (``{``, ``[`` or
    ``<``) is held back until it ends, then sent as calls if it is valid calls, as content
    otherwise; any other reply streams as content.
    """
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model}
    extra: dict[str, Any] = {"usage": None} if req.include_usage else {}
    n = req.num

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse.encode({**base, "choices": [choice], **extra})

    texts = [""] * n
    streamers = [ToolCallStreamer() for _ in range(n)]
    # Per row under auto: None = undecided (only blanks so far), True = held, False = content.
    held: list[bool | None] = [None] * n
    try:
        for i in range(n):
            yield chunk(i, {"role": "assistant", "content": None if plan.forced else ""})
        async for kind, value in stream_item(request, served, item):
            if kind == "token":
                i = value.index
                texts[i] += value.text
                if plan.forced:
                    for d in streamers[i].feed(texts[i]):
                        yield chunk(i, {"tool_calls": [d]})
                    continue
                if plan.mode == "auto" and held[i] is None:
                    head = texts[i].lstrip()
                    if not head:
                        continue
                    held[i] = head[0] in "[{<"
                    if not held[i] and texts[i]:
                        yield chunk(i, {"content": texts[i]})
                    continue
                if held[i]:
                    continue
                if value.text:
                    yield chunk(i, {"content": value.text})
                continue
            result: SampleResult = value
            count_tokens(st, req.model, result)
            for i, s in enumerate(result.sequences):
                if plan.forced:
                    calls = streamers[i].complete(plan)
                    finish = "tool_calls" if calls else _finish(s.finish_reason)
                elif plan.mode == "auto" and held[i] is not False:
                    content, parsed, finish = _reply(served, s.text, s.finish_reason, plan)
                    if parsed:
                        for d in _call_deltas(parsed):
                            yield chunk(i, {"tool_calls": [d]})
                    elif content:
                        yield chunk(i, {"content": content})
                else:
                    finish = _finish(s.finish_reason)
                yield chunk(i, {}, finish)
            if req.include_usage:
                yield sse.encode({**base, "choices": [], "usage": _usage(result).model_dump()})
    except Exception as exc:
        yield _stream_error(request, exc)
    yield _DONE


# ---------------------------------------------------------------- images


class ImageGenerationRequest(BaseModel):
    # Unknown fields are a 400 naming them, as on the other /v1 routes.
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=4000)
    model: str | None = None
    n: int = Field(default=1, ge=1, le=10)
    size: str = Field(default="32x32", pattern=r"^\d{1,4}x\d{1,4}$")
    response_format: Literal["b64_json"] = "b64_json"
    quality: str | None = None  # only "auto" / "standard" (one quality here)
    style: str | None = None  # refused: the model has no style setting
    user: str | None = None
    background: str | None = None
    output_format: str | None = None
    moderation: str | None = None

    def check_unsupported(self) -> None:
        if self.quality not in (None, "auto", "standard"):
            raise _reject("quality", "only 'auto' or 'standard'")
        if self.style is not None:
            raise _reject("style", "not supported")
        if self.background not in (None, "auto"):
            raise _reject("background", "only 'auto'")
        if self.output_format not in (None, "png"):
            raise _reject("output_format", "only 'png'")
        if self.moderation not in (None, "auto"):
            raise _reject("moderation", "only 'auto'")


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


@router.post("/images/generations", response_model=ImagesResponse)
async def images_generations(req: ImageGenerationRequest, request: Request) -> ImagesResponse:
    req.check_unsupported()
    st = state_of(request)
    if req.model is None:
        served = st.first_of_kind("image")
        if served is None:
            raise APIError(
                404, "model: no image model is served", param="model", code="model_not_found"
            )
        served = st.ensure_ready(served)
    else:
        served = st.get_model(req.model, kinds=("image",))
    w_s, _, h_s = req.size.partition("x")
    width, height = int(w_s), int(h_s)
    for name, v in (("width", width), ("height", height)):
        if not 8 <= v <= 2048 or v % 8:
            raise APIError(
                400, f"size: {name} must be a multiple of 8 between 8 and 2048", param="size"
            )
    try:
        check_image_limits(st, width=width, height=height, steps=4, n=req.n)
    except APIError as exc:
        if exc.param in ("width", "height"):
            exc.param = "size"  # the OpenAI request names the size, not width/height
        raise
    item = ImageItem(prompt=req.prompt, width=width, height=height, n=req.n)
    result = await run_item(request, served.scheduler, item)
    return ImagesResponse(
        created=int(time.time()),
        data=[ImageData(b64_json=base64.b64encode(p).decode()) for p in result.images_png],
    )
