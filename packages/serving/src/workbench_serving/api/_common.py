"""Helpers every route module shares: run work on a scheduler, tokenize, decode images."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from workbench_core.cancel import CancelToken
from workbench_core.protocol import ChatMessage, ErrorDetail, FutureAccepted, ModelInput
from workbench_serving.api.errors import APIError, request_id_of, to_api_error
from workbench_serving.api.state import ServedModel, ServingState
from workbench_serving.scheduler import BatchScheduler


def state_of(request: Request) -> ServingState:
    st = request.app.state.serving
    assert isinstance(st, ServingState)
    return st


def request_timeout(request: Request, st: ServingState) -> float:
    """The request's deadline: ``X-Request-Timeout`` seconds, capped by settings."""
    cap = st.settings.request_timeout_s
    raw = request.headers.get("x-request-timeout")
    if raw is None:
        return cap
    try:
        value = float(raw)
    except ValueError:
        raise APIError(
            400, "X-Request-Timeout must be a number of seconds", param="X-Request-Timeout"
        ) from None
    if not value > 0:
        raise APIError(400, "X-Request-Timeout must be > 0", param="X-Request-Timeout")
    return min(value, cap)


async def watch_disconnect(request: Request, token: CancelToken) -> None:
    """Cancel ``token`` when the client goes away (uvicorn sends ``http.disconnect``)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            token.cancel("client disconnected")
            return


async def run_item(
    request: Request,
    scheduler: BatchScheduler,
    item: Any,
    *,
    token: CancelToken | None = None,
    watch: bool = True,
) -> Any:
    """Submit ``item`` with the request's deadline; drop it if the client disconnects."""
    st = state_of(request)
    token = token or CancelToken()
    watcher = asyncio.create_task(watch_disconnect(request, token)) if watch else None
    try:
        return await scheduler.submit(item, token=token, timeout=request_timeout(request, st))
    finally:
        if watcher is not None:
            watcher.cancel()
        st.update_gauges()


def wants_future(request: Request) -> bool:
    value = request.query_params.get("wait")
    if value is None:
        return False
    if value.lower() in ("false", "0", "no"):
        return True
    if value.lower() in ("true", "1", "yes"):
        return False
    raise APIError(400, "wait must be true or false", param="wait")


def future_error(exc: BaseException) -> tuple[int, ErrorDetail]:
    err = to_api_error(exc)
    return err.status, ErrorDetail(
        type=err.type, message=err.message, param=err.param, code=err.code
    )


async def respond(
    request: Request,
    work: Callable[[bool], Coroutine[Any, Any, BaseModel]],
) -> BaseModel | JSONResponse:
    """Run ``work`` now, or as a future when the client asked ``?wait=false`` (202)."""
    if wants_future(request):
        st = state_of(request)
        coro = work(False)
        try:
            rid = st.futures.spawn(coro, future_error)
        except Exception as exc:
            coro.close()  # never started: do not leave an un-awaited coroutine behind
            raise APIError(429, str(exc), headers={"Retry-After": "5"}) from exc
        body = FutureAccepted(request_id=rid).model_dump()
        return JSONResponse(body, status_code=202)
    return await work(True)


# ---------------------------------------------------------------- tokenization


def tokenizer_of(served: ServedModel) -> Any:
    tok = getattr(served.engine, "tokenizer", None)
    if tok is None:
        raise APIError(400, f"model {served.name!r} has no tokenizer", param="model")
    return tok


def encode_chat(
    served: ServedModel,
    messages: list[ChatMessage] | list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    """Chat messages (and tools, for templates that render them) -> prompt tokens."""
    msgs = [m.model_dump() if isinstance(m, ChatMessage) else m for m in messages]
    engine = served.engine
    extra: dict[str, Any] = {} if tools is None else {"tools": tools}
    if hasattr(engine, "encode_chat"):
        return [int(t) for t in engine.encode_chat(msgs, **extra)]
    tok = tokenizer_of(served)
    try:
        ids = tok.apply_chat_template(
            msgs, tokenize=True, add_generation_prompt=True, return_dict=False, **extra
        )
    except Exception as exc:
        raise APIError(
            400, f"messages: cannot apply chat template: {exc}", param="messages"
        ) from exc
    return [int(t) for t in ids]


def encode_text(served: ServedModel, text: str) -> list[int]:
    engine = served.engine
    if hasattr(engine, "encode_text"):
        return [int(t) for t in engine.encode_text(text)]
    return [int(t) for t in tokenizer_of(served).encode(text, add_special_tokens=True)]


def encode_prompt(
    served: ServedModel, prompt: str | list[ChatMessage] | ModelInput, *, param: str = "prompt"
) -> list[int]:
    if isinstance(prompt, ModelInput):
        tokens = prompt.to_ints()
        vocab = context_info(served).get("vocab_size")
        if isinstance(vocab, int) and any(t >= vocab for t in tokens):
            raise APIError(400, f"{param}: token ids must be < vocab size {vocab}", param=param)
    elif isinstance(prompt, str):
        tokens = encode_text(served, prompt)
    else:
        tokens = encode_chat(served, prompt)
    if not tokens:
        raise APIError(400, f"{param}: prompt encodes to no tokens", param=param)
    return tokens


def context_info(served: ServedModel) -> dict[str, Any]:
    if not served.info:
        try:
            served.info = dict(served.engine.describe())
        except Exception:
            served.info = {}
    return served.info


def check_length(served: ServedModel, prompt_len: int, max_tokens: int, param: str) -> None:
    ctx = context_info(served).get("context_length")
    if isinstance(ctx, int) and prompt_len + max_tokens > ctx:
        raise APIError(
            400,
            f"{param}: prompt ({prompt_len} tokens) + max_tokens ({max_tokens}) exceeds the "
            f"model's context length {ctx}",
            param=param,
            code="context_length_exceeded",
        )


# ---------------------------------------------------------------- images

_MAX_IMAGE_PIXELS = 4096 * 4096


def decode_image(data: str, param: str) -> Any:
    """A base64 string or ``data:image/...;base64,`` URL -> RGB PIL image, or a 400 naming param."""
    from PIL import Image, UnidentifiedImageError

    payload = data
    if data.startswith("data:"):
        head, sep, payload = data.partition(",")
        if not sep or ";base64" not in head:
            raise APIError(400, f"{param}: data URL must be base64 encoded", param=param)
        if not head[5:].startswith("image/"):
            raise APIError(400, f"{param}: data URL must hold an image/* type", param=param)
    elif data.startswith(("http://", "https://")):
        raise APIError(
            400, f"{param}: remote image URLs are not fetched; send a data URL", param=param
        )
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{param}: not valid base64", param=param) from None
    if not raw:
        raise APIError(400, f"{param}: empty image", param=param)
    try:
        img = Image.open(io.BytesIO(raw))
        if img.width * img.height > _MAX_IMAGE_PIXELS:
            raise APIError(
                400, f"{param}: image is larger than {_MAX_IMAGE_PIXELS} pixels", param=param
            )
        img.load()
        return img.convert("RGB")
    except APIError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise APIError(400, f"{param}: bytes are not a decodable image", param=param) from None


def rid(request: Request) -> str | None:
    return request_id_of(request)


def check_image_limits(st: ServingState, *, width: int, height: int, steps: int, n: int) -> None:
    """Refuse image requests beyond the server's configured bounds (400 naming the field)."""
    s = st.settings
    for name, value in (("width", width), ("height", height)):
        if value > s.max_image_size:
            raise APIError(
                400, f"{name}: at most {s.max_image_size} pixels on this server", param=name
            )
    if steps > s.max_image_steps:
        raise APIError(400, f"steps: at most {s.max_image_steps} on this server", param="steps")
    if n > s.max_images_per_request:
        raise APIError(400, f"n: at most {s.max_images_per_request} images per request", param="n")
