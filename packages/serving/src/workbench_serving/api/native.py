"""The native, Tinker-style API under ``/api/v1`` (types from ``workbench_core.protocol``)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from workbench_core import sse
from workbench_core.cancel import CancelToken
from workbench_core.protocol import (
    Capabilities,
    ComputeLogprobsRequest,
    ComputeLogprobsResponse,
    ErrorBody,
    FutureResult,
    GeneratedImage,
    HealthResponse,
    ImageGenerateRequest,
    ImageGenerateResponse,
    ModelInfo,
    RetrieveFutureRequest,
    SampledSequence,
    SampleRequest,
    SampleResponse,
    SupportedModel,
    TokenEvent,
    TokenizerInfo,
    VisionGenerateRequest,
    VisionGenerateResponse,
)
from workbench_serving.api._common import (
    check_image_limits,
    check_length,
    context_info,
    decode_image,
    encode_prompt,
    respond,
    rid,
    run_item,
    state_of,
    watch_disconnect,
)
from workbench_serving.api.errors import APIError, error_payload, not_found, to_api_error
from workbench_serving.api.state import ServedModel, ServingState
from workbench_serving.api.structured import check_constraint, response_format_spec
from workbench_serving.engines.base import (
    ImageItem,
    ImageResult,
    LogprobsItem,
    SampleItem,
    SampleResult,
    VisionItem,
    VisionResult,
)
from workbench_serving.futures import progress_reporter

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 422, 429, 503, 504)
}

router = APIRouter(prefix="/api/v1", responses=ERRORS)


# ---------------------------------------------------------------- health


@router.get("/healthz", response_model=HealthResponse, tags=["health"])
async def healthz() -> HealthResponse:
    """Alive: the process answers (models may still be loading)."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse, tags=["health"])
async def readyz(request: Request) -> Any:
    """Ready: every configured model is loaded (503 until then)."""
    st = state_of(request)
    models = {m.name: m.status for m in st.models.values()}
    if st.training is not None:
        models[f"{st.training.name} (training)"] = st.training.status
    if st.closing:
        return JSONResponse(HealthResponse(status="shutting_down", models=models).model_dump(), 503)
    if st.ready():
        return HealthResponse(status="ok", models=models)
    failed = any(s == "error" for s in models.values())
    body = HealthResponse(status="error" if failed else "loading", models=models)
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "2"})


# ---------------------------------------------------------------- capabilities


def model_infos(st: ServingState) -> list[ModelInfo]:
    out: list[ModelInfo] = []
    for m in st.models.values():
        b = st.settings.batching_for(m.name)
        info = context_info(m) if m.status == "ready" else {}
        out.append(
            ModelInfo(
                name=m.name,
                kind=m.kind,  # type: ignore[arg-type]
                context_length=info.get("context_length"),
                max_batch_size=b.max_batch_size,
                max_wait_ms=b.max_wait_ms,
                max_queue_size=b.max_queue_size,
                status=m.status,
                dtype=str(info["dtype"]) if info.get("dtype") is not None else None,
                device=str(info["device"]) if info.get("device") is not None else None,
            )
        )
    if st.training is not None:
        b = st.settings.batching_for(st.training.name)
        out.append(
            ModelInfo(
                name=st.training.name,
                kind="training",
                status=st.training.status,
                max_batch_size=1,
                max_queue_size=b.max_queue_size,
                base_model=st.training.name,
            )
        )
    for a in st.adapters.values():
        base = st.models.get(a.base_model)
        ctx = context_info(base).get("context_length") if base and base.status == "ready" else None
        out.append(
            ModelInfo(
                name=a.model_name, kind="adapter", base_model=a.base_model, context_length=ctx
            )
        )
    return out


@router.get("/capabilities", response_model=Capabilities, tags=["models"])
async def capabilities(request: Request) -> Capabilities:
    """Served models with their kind, context length and batching limits."""
    st = state_of(request)
    infos = model_infos(st)
    return Capabilities(
        models=infos,
        supported_models=[SupportedModel(model_name=i.name) for i in infos if i.kind != "training"],
        max_request_bytes=st.settings.max_request_bytes,
    )


@router.get("/models/{name:path}/tokenizer", response_model=TokenizerInfo, tags=["models"])
async def tokenizer(name: str, request: Request) -> TokenizerInfo:
    """A text model's ``tokenizer.json``, chat template and special tokens."""
    st = state_of(request)
    served = st.get_model(name, kinds=("text", "vision"), param="name")
    files = getattr(served.engine, "tokenizer_files", None)
    if files is None:
        raise APIError(404, f"model {name!r} does not export its tokenizer", param="name")
    data = files()
    if not data.get("tokenizer_json"):
        raise APIError(404, f"model {name!r} has no fast tokenizer to export", param="name")
    ids = data.get("special_token_ids", {})
    return TokenizerInfo(
        model=name,
        tokenizer_json=data["tokenizer_json"],
        chat_template=data.get("chat_template"),
        special_tokens={
            **data.get("special_tokens", {}),
            "additional_special_tokens": data.get("additional_special_tokens", []),
            "eos_token_ids": data.get("eos_token_ids", []),
        },
        bos_token_id=ids.get("bos_token"),
        eos_token_id=ids.get("eos_token"),
        pad_token_id=ids.get("pad_token"),
    )


# ---------------------------------------------------------------- sampling


def resolve_text_model(
    st: ServingState, name: str, param: str = "model"
) -> tuple[ServedModel, str | None]:
    """A base text model, or a LoRA checkpoint served on top of its base: (model, adapter)."""
    adapter = st.adapters.get(name)
    if adapter is not None:
        host = st.adapter_host(adapter)
        return st.ensure_ready(host), adapter.model_name
    return st.get_model(name, kinds=("text",), param=param), None


def build_sample_item(st: ServingState, req: SampleRequest) -> tuple[ServedModel, SampleItem]:
    served, adapter = resolve_text_model(st, req.model)
    tokens = encode_prompt(served, req.prompt)
    p = req.sampling_params
    check_length(served, len(tokens), p.max_tokens, "sampling_params.max_tokens")
    item = SampleItem(
        prompt_tokens=tokens,
        max_tokens=p.max_tokens,
        num_samples=req.num_samples,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        stop=list(p.stop or []),
        seed=p.seed,
        adapter=adapter,
        constraint=response_format_spec(p.response_format, "sampling_params.response_format"),
    )
    return served, item


def to_sample_response(model: str, result: SampleResult) -> SampleResponse:
    return SampleResponse(
        model=model,
        sequences=[
            SampledSequence(
                tokens=list(s.tokens),
                text=s.text,
                logprobs=list(s.logprobs) if s.logprobs is not None else None,
                finish_reason=s.finish_reason,
            )
            for s in result.sequences
        ],
        prompt_tokens=result.prompt_tokens,
    )


def count_tokens(st: ServingState, model: str, result: SampleResult) -> None:
    st.metrics.tokens.labels(model, "prompt").inc(result.prompt_tokens)
    st.metrics.tokens.labels(model, "completion").inc(sum(len(s.tokens) for s in result.sequences))


async def stream_item(
    request: Request, served: ServedModel, item: SampleItem
) -> AsyncIterator[tuple[str, Any]]:
    """Run a sample item, yielding ("token", TokenEvent) as produced then ("done", SampleResult).

    Stops the work when the consumer goes away (the generator is closed: the token is cancelled,
    so the engine stops at its next checkpoint and a queued item never runs).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
    token = CancelToken()

    def on_token(index: int, tok: int, text: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, TokenEvent(index=index, token=tok, text=text))

    item.on_token = on_token
    item.cancel = token
    task = asyncio.create_task(run_item(request, served.scheduler, item, token=token, watch=False))
    # A stream blocked waiting for its first token sends nothing, so the server would not notice
    # a departed client by a failed send; watch the connection itself.
    watcher = asyncio.create_task(watch_disconnect(request, token))
    try:
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield "token", getter.result()
                continue
            getter.cancel()
            while not queue.empty():
                yield "token", queue.get_nowait()
            yield "done", task.result()
            return
    finally:
        watcher.cancel()
        if not task.done():
            token.cancel("client disconnected")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@router.post("/sample", response_model=SampleResponse, tags=["sampling"])
async def sample(req: SampleRequest, request: Request) -> Any:
    """Sample ``num_samples`` continuations; ``stream: true`` answers SSE ``token`` then ``done``."""
    st = state_of(request)
    served, item = build_sample_item(st, req)
    await check_constraint(served, item.constraint)

    if req.stream:
        request_id = rid(request)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for kind, value in stream_item(request, served, item):
                    if kind == "token":
                        yield sse.encode(value.model_dump(), event="token")
                    else:
                        count_tokens(st, req.model, value)
                        resp = to_sample_response(req.model, value)
                        yield sse.encode(resp.model_dump(), event="done")
            except Exception as exc:
                err = to_api_error(exc)
                st.metrics.errors.labels(err.type, str(err.status)).inc()
                body = error_payload(
                    request_id, err.status, err.message, type=err.type, param=err.param
                )
                yield sse.encode(body, event="error")

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def work(watch: bool) -> BaseModel:
        result: SampleResult = await run_item(request, served.scheduler, item, watch=watch)
        count_tokens(st, req.model, result)
        return to_sample_response(req.model, result)

    return await respond(request, work)


@router.post("/compute_logprobs", response_model=ComputeLogprobsResponse, tags=["sampling"])
async def compute_logprobs(req: ComputeLogprobsRequest, request: Request) -> Any:
    """Per-token logprobs of a token sequence (``null`` for the first token)."""
    st = state_of(request)
    served, adapter = resolve_text_model(st, req.model)
    tokens = encode_prompt(served, req.prompt)
    check_length(served, len(tokens), 0, "prompt")
    item = LogprobsItem(tokens=tokens, adapter=adapter)

    async def work(watch: bool) -> BaseModel:
        result = await run_item(request, served.scheduler, item, watch=watch)
        values = result if isinstance(result, list) else getattr(result, "logprobs", result)
        return ComputeLogprobsResponse(logprobs=list(values))

    return await respond(request, work)


# ---------------------------------------------------------------- images and vision


@router.post("/images/generate", response_model=ImageGenerateResponse, tags=["images"])
async def images_generate(req: ImageGenerateRequest, request: Request) -> Any:
    """Text-to-image; images come back as base64 PNG."""
    st = state_of(request)
    served = st.get_model(req.model, kinds=("image",))
    check_image_limits(st, width=req.width, height=req.height, steps=req.steps, n=req.n)
    item = ImageItem(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        steps=req.steps,
        guidance_scale=req.guidance_scale,
        width=req.width,
        height=req.height,
        seed=req.seed,
        n=req.n,
    )

    async def work(watch: bool) -> BaseModel:
        report = progress_reporter()
        if report is not None:  # as a future: retrieve shows the denoising step
            item.on_progress = lambda step, total: report({"step": step, "total": total})
        result: ImageResult = await run_item(request, served.scheduler, item, watch=watch)
        return ImageGenerateResponse(
            images=[
                GeneratedImage(b64_png=base64.b64encode(p).decode()) for p in result.images_png
            ],
            seed=result.seed,
        )

    return await respond(request, work)


@router.post("/vision/generate", response_model=VisionGenerateResponse, tags=["vision"])
async def vision_generate(req: VisionGenerateRequest, request: Request) -> Any:
    """Image(s) + text -> text."""
    st = state_of(request)
    served = st.get_model(req.model, kinds=("vision",))
    images = [decode_image(data, f"images.{i}") for i, data in enumerate(req.images)]
    item = VisionItem(
        images=images,
        prompt=req.prompt,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        seed=req.seed,
    )

    async def work(watch: bool) -> BaseModel:
        result: VisionResult = await run_item(request, served.scheduler, item, watch=watch)
        st.metrics.tokens.labels(req.model, "completion").inc(len(result.tokens))
        return VisionGenerateResponse(
            text=result.text, tokens=list(result.tokens), finish_reason=result.finish_reason
        )

    return await respond(request, work)


# ---------------------------------------------------------------- futures


@router.post("/futures/retrieve", response_model=FutureResult, tags=["futures"])
async def futures_retrieve(req: RetrieveFutureRequest, request: Request) -> FutureResult:
    """Long-poll a ``?wait=false`` operation for up to ``timeout`` seconds."""
    st = state_of(request)
    result = await st.futures.retrieve(req.request_id, req.timeout)
    if result is None:
        raise not_found("future", req.request_id, param="request_id")
    return result
