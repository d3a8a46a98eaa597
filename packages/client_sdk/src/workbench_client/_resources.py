"""Resources of the native API: each method builds a body and calls the one pipeline.

A method here is a few lines by design: retries, idempotency keys, error mapping and parsing all
live in ``_base_client``. Bodies are built as plain dicts (not validated client-side) so the
server stays the judge of what is valid and answers a 4xx naming the field.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote

from pydantic import BaseModel

from workbench_core.protocol import (
    AdamParams,
    Capabilities,
    ChatMessage,
    Checkpoint,
    CheckpointList,
    ComputeLogprobsResponse,
    CreateSamplerResponse,
    Datum,
    ForwardBackwardResponse,
    FutureAccepted,
    FutureResult,
    HealthResponse,
    ImageGenerateResponse,
    LoadCheckpointResponse,
    ModelInfo,
    ModelInput,
    OptimStepResponse,
    SampleResponse,
    SamplingParams,
    TokenEvent,
    TokenizerInfo,
    TrainingRun,
    TrainingRunList,
    VisionGenerateResponse,
)

from ._errors import APIResponseValidationError, APITimeoutError, make_status_error

if TYPE_CHECKING:
    from ._base_client import AsyncAPIClient

T = TypeVar("T")

PromptLike = str | ModelInput | Sequence[ChatMessage | dict[str, Any]]
ImageLike = bytes | str | os.PathLike[str]


def _dump(value: Any) -> Any:
    """Pydantic models to JSON-ready dicts (unset optionals left out), other values as they are."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _prune(body: dict[str, Any]) -> dict[str, Any]:
    return {k: _dump(v) for k, v in body.items() if v is not None}


def _seg(value: str) -> str:
    return quote(value, safe="")


def encode_image(image: ImageLike) -> str:
    """An image for the vision API: raw bytes or a file path become base64; strings pass through.

    A string that names an existing file is read; any other string is sent as given (base64 or a
    ``data:image/...;base64,`` URL).
    """
    if isinstance(image, bytes):
        return base64.b64encode(image).decode("ascii")
    if isinstance(image, os.PathLike) or (
        isinstance(image, str)
        and not image.startswith("data:")
        and len(image) < 4096
        and os.path.isfile(image)
    ):
        return base64.b64encode(Path(image).read_bytes()).decode("ascii")
    return str(image)


class _Resource:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client


class ServiceResource(_Resource):
    """Liveness, readiness and what the server can do."""

    async def health(self) -> HealthResponse:
        """``GET /api/v1/healthz``: the server is alive."""
        return await self._client._get("healthz", cast_to=HealthResponse)

    async def ready(self) -> HealthResponse:
        """``GET /api/v1/readyz``: every model is loaded (503 while loading)."""
        return await self._client._get("readyz", cast_to=HealthResponse)

    async def capabilities(self) -> Capabilities:
        """``GET /api/v1/capabilities``: served models with their limits."""
        return await self._client._get("capabilities", cast_to=Capabilities)


class ModelsResource(_Resource):
    """The served models and their tokenizers."""

    async def list(self) -> list[ModelInfo]:
        """Every served model (from ``capabilities``)."""
        caps = await self._client._get("capabilities", cast_to=Capabilities)
        return caps.models

    async def tokenizer(self, model: str) -> TokenizerInfo:
        """``GET /api/v1/models/{name}/tokenizer``: the files a client needs to tokenize locally."""
        return await self._client._get(f"models/{_seg(model)}/tokenizer", cast_to=TokenizerInfo)


class SampleStream:
    """An async iterator of ``TokenEvent`` for one streamed sample; ``final`` holds the result.

    After the ``done`` event ``final`` is the complete ``SampleResponse``, so a caller can show
    tokens as they arrive and still get the same object ``sample`` would have returned.
    """

    def __init__(self, events: AsyncIterator[Any]) -> None:
        self._events = events
        self.final: SampleResponse | None = None

    def __aiter__(self) -> SampleStream:
        return self

    async def __anext__(self) -> TokenEvent:
        while True:
            event = await self._events.__anext__()
            if event.event == "token":
                return TokenEvent.model_validate(event.json())
            if event.event == "done":
                self.final = SampleResponse.model_validate(event.json())
                await self.aclose()
                raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the underlying HTTP stream (the server drops the request)."""
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()

    async def until_done(self) -> SampleResponse:
        """Consume the rest of the stream and return the final response."""
        async for _ in self:
            pass
        if self.final is None:
            raise APIResponseValidationError("The stream ended without a 'done' event")
        return self.final


class SamplingResource(_Resource):
    """Text sampling and prompt log-probabilities."""

    @staticmethod
    def _sample_body(
        model: str,
        prompt: PromptLike,
        num_samples: int,
        sampling_params: SamplingParams | dict[str, Any] | None,
        stream: bool,
    ) -> dict[str, Any]:
        return _prune(
            {
                "model": model,
                "prompt": prompt,
                "num_samples": num_samples,
                "sampling_params": sampling_params,
                "stream": stream,
            }
        )

    async def sample(
        self,
        model: str,
        prompt: PromptLike,
        *,
        num_samples: int = 1,
        sampling_params: SamplingParams | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SampleResponse:
        """``POST /api/v1/sample``: ``num_samples`` continuations of a text, chat or token prompt."""
        body = self._sample_body(model, prompt, num_samples, sampling_params, False)
        return await self._client._post(
            "sample", body=body, cast_to=SampleResponse, idempotency_key=idempotency_key
        )

    async def stream(
        self,
        model: str,
        prompt: PromptLike,
        *,
        num_samples: int = 1,
        sampling_params: SamplingParams | dict[str, Any] | None = None,
    ) -> SampleStream:
        """``POST /api/v1/sample`` with ``stream: true``: token events as they are generated."""
        body = self._sample_body(model, prompt, num_samples, sampling_params, True)
        return SampleStream(self._client._stream("sample", body=body))

    async def compute_logprobs(
        self, model: str, prompt: ModelInput | Sequence[int]
    ) -> ComputeLogprobsResponse:
        """``POST /api/v1/compute_logprobs``: log p(token | prefix) per prompt position."""
        if not isinstance(prompt, ModelInput):
            prompt = ModelInput.from_ints(list(prompt))
        return await self._client._post(
            "compute_logprobs",
            body={"model": model, "prompt": _dump(prompt)},
            cast_to=ComputeLogprobsResponse,
        )


class ImagesResource(_Resource):
    """Text-to-image generation."""

    async def generate(
        self,
        model: str,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        seed: int | None = None,
        n: int | None = None,
    ) -> ImageGenerateResponse:
        """``POST /api/v1/images/generate``: ``n`` PNG images, base64-encoded."""
        body = _prune(
            {
                "model": model,
                "prompt": prompt,
                "negative_prompt": negative_prompt,
                "steps": steps,
                "guidance_scale": guidance_scale,
                "width": width,
                "height": height,
                "seed": seed,
                "n": n,
            }
        )
        return await self._client._post("images/generate", body=body, cast_to=ImageGenerateResponse)


class VisionResource(_Resource):
    """Image + text -> text."""

    async def generate(
        self,
        model: str,
        images: ImageLike | Sequence[ImageLike],
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> VisionGenerateResponse:
        """``POST /api/v1/vision/generate``; images may be bytes, file paths, base64 or data URLs."""
        if isinstance(images, (bytes, str, os.PathLike)):
            images = [images]
        body = _prune(
            {
                "model": model,
                "images": [encode_image(i) for i in images],
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": temperature,
                "seed": seed,
            }
        )
        return await self._client._post(
            "vision/generate", body=body, cast_to=VisionGenerateResponse
        )


class TrainingResource(_Resource):
    """LoRA training runs: create, step, checkpoint, load, sample from."""

    async def create_run(
        self,
        base_model: str,
        *,
        rank: int = 8,
        seed: int | None = None,
        target_modules: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> TrainingRun:
        """``POST /api/v1/training/runs``: a new LoRA adapter over ``base_model``."""
        body = _prune(
            {
                "base_model": base_model,
                "rank": rank,
                "seed": seed,
                "target_modules": target_modules,
            }
        )
        return await self._client._post(
            "training/runs", body=body, cast_to=TrainingRun, idempotency_key=idempotency_key
        )

    async def list_runs(self) -> list[TrainingRun]:
        """``GET /api/v1/training/runs``."""
        return (await self._client._get("training/runs", cast_to=TrainingRunList)).runs

    async def get_run(self, run_id: str) -> TrainingRun:
        """``GET /api/v1/training/runs/{id}``."""
        return await self._client._get(f"training/runs/{_seg(run_id)}", cast_to=TrainingRun)

    async def forward_backward(
        self,
        run_id: str,
        data: Sequence[Datum | dict[str, Any]],
        loss_fn: str = "cross_entropy",
        *,
        idempotency_key: str | None = None,
    ) -> ForwardBackwardResponse:
        """Accumulate gradients of ``loss_fn`` over ``data``; answers the loss."""
        return await self._client._post(
            f"training/runs/{_seg(run_id)}/forward_backward",
            body={"data": _dump(list(data)), "loss_fn": loss_fn},
            cast_to=ForwardBackwardResponse,
            idempotency_key=idempotency_key,
        )

    async def optim_step(
        self,
        run_id: str,
        adam_params: AdamParams | dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> OptimStepResponse:
        """Apply one Adam step (exactly once, whatever the retries: the key is reused)."""
        return await self._client._post(
            f"training/runs/{_seg(run_id)}/optim_step",
            body=_prune({"adam_params": adam_params}),
            cast_to=OptimStepResponse,
            idempotency_key=idempotency_key,
        )

    async def save_checkpoint(
        self, run_id: str, name: str, *, kind: str = "weights", idempotency_key: str | None = None
    ) -> Checkpoint:
        """Save the adapter (``weights``) or adapter + optimizer (``state``) under ``name``."""
        return await self._client._post(
            f"training/runs/{_seg(run_id)}/checkpoints",
            body={"name": name, "kind": kind},
            cast_to=Checkpoint,
            idempotency_key=idempotency_key,
        )

    async def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """``GET /api/v1/training/runs/{id}/checkpoints``."""
        return (
            await self._client._get(
                f"training/runs/{_seg(run_id)}/checkpoints", cast_to=CheckpointList
            )
        ).checkpoints

    async def load(
        self,
        run_id: str,
        checkpoint: str,
        *,
        with_optimizer: bool = False,
        idempotency_key: str | None = None,
    ) -> LoadCheckpointResponse:
        """Load a checkpoint into the run (with the optimizer state for ``state`` checkpoints)."""
        return await self._client._post(
            f"training/runs/{_seg(run_id)}/load",
            body={"checkpoint": checkpoint, "with_optimizer": with_optimizer},
            cast_to=LoadCheckpointResponse,
            idempotency_key=idempotency_key,
        )

    async def create_sampler(
        self, run_id: str, checkpoint: str, *, idempotency_key: str | None = None
    ) -> CreateSamplerResponse:
        """A model name that samples from ``checkpoint`` (usable in ``sample`` and in ``/v1``)."""
        return await self._client._post(
            f"training/runs/{_seg(run_id)}/sampler",
            body={"checkpoint": checkpoint},
            cast_to=CreateSamplerResponse,
            idempotency_key=idempotency_key,
        )


class FuturesResource(_Resource):
    """Deferred results: submit with ``?wait=false``, then long-poll ``futures/retrieve``."""

    async def submit(
        self, path: str, body: Any, *, idempotency_key: str | None = None
    ) -> FutureAccepted:
        """POST ``body`` to ``path`` with ``?wait=false``; the server answers 202 at once."""
        return await self._client._post(
            path,
            body=_dump(body),
            cast_to=FutureAccepted,
            params={"wait": "false"},
            idempotency_key=idempotency_key,
        )

    async def retrieve(self, request_id: str, *, timeout: float = 30.0) -> FutureResult:
        """``POST /api/v1/futures/retrieve``: waits up to ``timeout`` s for the outcome."""
        return await self._client._post(
            "futures/retrieve",
            body={"request_id": request_id, "timeout": timeout},
            cast_to=FutureResult,
            timeout=timeout + 30.0,
        )

    async def wait(
        self,
        request_id: str,
        cast_to: type[T],
        *,
        poll_timeout: float = 30.0,
        deadline: float | None = None,
    ) -> T:
        """Poll until the future is done; parse its result or raise its typed error.

        This is the second retry layer (one business call): each poll is one HTTP request with
        its own retries; this loop only repeats polls while the server says ``pending``.
        """
        start = time.monotonic()
        while True:
            budget = poll_timeout
            if deadline is not None:
                left = deadline - (time.monotonic() - start)
                if left <= 0:
                    raise APITimeoutError(f"future {request_id} still pending after {deadline} s")
                budget = min(budget, left)
            outcome = await self.retrieve(request_id, timeout=budget)
            if outcome.status == "done":
                validate = getattr(cast_to, "model_validate", None)
                value = validate(outcome.result) if validate else outcome.result
                return cast(T, value)
            if outcome.status == "error":
                detail = outcome.error
                raise make_status_error(
                    outcome.http_status or 500,
                    {"error": detail.model_dump()} if detail else None,
                    request_id=request_id,
                )
            await asyncio.sleep(0)


__all__ = [
    "FuturesResource",
    "ImagesResource",
    "ModelsResource",
    "SampleStream",
    "SamplingResource",
    "ServiceResource",
    "TrainingResource",
    "VisionResource",
    "encode_image",
]
