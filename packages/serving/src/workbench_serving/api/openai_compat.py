"""OpenAI-compatible API under ``/v1`` so the official ``openai`` package works unchanged.

Covers models, completions, chat completions (with streaming in OpenAI's chunk format ending in
``data: [DONE]``, and ``image_url`` data-URL parts routed to the vision model) and
images/generations (``b64_json``). Saved LoRA checkpoints are listed as models and usable by
name, as vLLM serves LoRA modules. Errors use OpenAI's body so the package raises its own classes.
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
from workbench_serving.api._common import (
    check_image_limits,
    check_length,
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
from workbench_serving.engines.base import ImageItem, SampleItem, SampleResult, VisionItem

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


class _Base(BaseModel):
    # OpenAI clients send many optional fields we do not act on; ignore them instead of failing.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    user: str | None = None

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


class CompletionRequest(_Base):
    prompt: str | list[int] = Field(description="Text or token ids (one prompt per request).")
    max_tokens: int | None = Field(default=16, ge=1, le=4096)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[int]) -> str | list[int]:
        if isinstance(v, str) and not v:
            raise ValueError("prompt must not be empty")
        if isinstance(v, list) and (not v or any(t < 0 for t in v)):
            raise ValueError("prompt token ids must be a non-empty list of ids >= 0")
        return v


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(_Base):
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


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
    served: ServedModel, req: _Base, tokens: list[int], adapter: str | None, max_tokens: int
) -> SampleItem:
    check_length(served, len(tokens), max_tokens, "max_tokens")
    return SampleItem(
        prompt_tokens=tokens,
        max_tokens=max_tokens,
        num_samples=req.n,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop_list(),
        seed=req.seed,
        adapter=adapter,
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


# ---------------------------------------------------------------- completions


@router.post("/completions", response_model=Completion)
async def completions(req: CompletionRequest, request: Request) -> Any:
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
                            usage=_usage(value),
                        )
                        yield _sse_json(chunk)
            except Exception as exc:
                yield _stream_error(request, exc)
            yield _DONE

        return StreamingResponse(events(), media_type="text/event-stream")

    result: SampleResult = await run_item(request, served.scheduler, item)
    count_tokens(st, req.model, result)
    return Completion(
        id=cid,
        created=created,
        model=req.model,
        choices=[
            CompletionChoice(index=i, text=prefix + s.text, finish_reason=_finish(s.finish_reason))
            for i, s in enumerate(result.sequences)
        ],
        usage=_usage(result),
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
    if req.n != 1:
        raise APIError(400, "n: image chat supports n=1 only", param="n")
    pil = [decode_image(url, param) for param, url in images]
    prompt = "\n".join(t for _, t in texts if t) or "Describe the image."
    item = VisionItem(
        images=pil, prompt=prompt, max_tokens=max_tokens, temperature=req.temperature, seed=req.seed
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
                    "usage": usage.model_dump(),
                }
            )
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


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
    st = state_of(request)
    max_tokens = req.max_completion_tokens or req.max_tokens or 64
    texts: list[tuple[str, str]] = []
    images: list[tuple[str, str]] = []
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        text, urls = _split_content(m, i)
        texts.append((m.role, text))
        images += [(f"messages.{i}.content.image_url", u) for u in urls]
        role = "system" if m.role == "developer" else m.role
        messages.append({"role": role, "content": text})
    target = st.models.get(req.model)
    if images or (target is not None and target.kind == "vision"):
        return await _chat_vision(request, st, req, texts, images, max_tokens)

    served, adapter = resolve_text_model(st, req.model)
    tokens = encode_chat(served, messages)
    if not tokens:
        raise APIError(400, "messages: the conversation encodes to no tokens", param="messages")
    item = _sample_item(served, req, tokens, adapter, max_tokens)
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if req.stream:

        async def events() -> AsyncIterator[bytes]:
            base = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
            }
            started: set[int] = set()
            try:
                for i in range(req.n):
                    started.add(i)
                    yield sse.encode(
                        {
                            **base,
                            "choices": [
                                {
                                    "index": i,
                                    "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None,
                                }
                            ],
                        }
                    )
                async for kind, value in stream_item(request, served, item):
                    if kind == "token":
                        yield sse.encode(
                            {
                                **base,
                                "choices": [
                                    {
                                        "index": value.index,
                                        "delta": {"content": value.text},
                                        "finish_reason": None,
                                    }
                                ],
                            }
                        )
                    else:
                        count_tokens(st, req.model, value)
                        choices = [
                            {"index": i, "delta": {}, "finish_reason": _finish(s.finish_reason)}
                            for i, s in enumerate(value.sequences)
                        ]
                        yield sse.encode(
                            {**base, "choices": choices, "usage": _usage(value).model_dump()}
                        )
            except Exception as exc:
                yield _stream_error(request, exc)
            yield _DONE

        return StreamingResponse(events(), media_type="text/event-stream")

    result: SampleResult = await run_item(request, served.scheduler, item)
    count_tokens(st, req.model, result)
    return ChatCompletion(
        id=cid,
        created=created,
        model=req.model,
        choices=[
            ChatChoice(
                index=i,
                message=AssistantMessage(content=s.text),
                finish_reason=_finish(s.finish_reason),
            )
            for i, s in enumerate(result.sequences)
        ],
        usage=_usage(result),
    )


# ---------------------------------------------------------------- images


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=4000)
    model: str | None = None
    n: int = Field(default=1, ge=1, le=10)
    size: str = Field(default="32x32", pattern=r"^\d{1,4}x\d{1,4}$")
    response_format: Literal["b64_json"] = "b64_json"
    quality: str | None = None
    style: str | None = None
    user: str | None = None


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


@router.post("/images/generations", response_model=ImagesResponse)
async def images_generations(req: ImageGenerationRequest, request: Request) -> ImagesResponse:
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
