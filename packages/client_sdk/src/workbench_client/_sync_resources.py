"""Typed sync twins of the resources: same names, arguments and results, minus ``await``.

Each method only hands the async method's coroutine to the loop thread; the behaviour lives once,
in ``_resources`` and the pipeline. The signatures are spelled out so type checkers and IDEs see
real types; a test compares every one with its async twin so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from workbench_core.protocol import (
    AdamParams,
    Capabilities,
    Checkpoint,
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
    TokenizerInfo,
    TrainingRun,
    VisionGenerateResponse,
)

from ._resources import ImageLike, PromptLike, SampleStream

if TYPE_CHECKING:
    from ._client import Runner, SyncSampleStream

T = TypeVar("T")


class _SyncResource:
    def __init__(self, resource: Any, runner: Runner) -> None:
        self._resource = resource
        self._runner = runner

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(getattr(self._resource, name)(*args, **kwargs))


class SyncServiceResource(_SyncResource):
    """Sync ``ServiceResource``."""

    def health(self) -> HealthResponse:
        return self._call("health")  # type: ignore[no-any-return]

    def ready(self) -> HealthResponse:
        return self._call("ready")  # type: ignore[no-any-return]

    def capabilities(self) -> Capabilities:
        return self._call("capabilities")  # type: ignore[no-any-return]


class SyncModelsResource(_SyncResource):
    """Sync ``ModelsResource``."""

    def list(self) -> list[ModelInfo]:
        return self._call("list")  # type: ignore[no-any-return]

    def tokenizer(self, model: str) -> TokenizerInfo:
        return self._call("tokenizer", model)  # type: ignore[no-any-return]


class SyncSamplingResource(_SyncResource):
    """Sync ``SamplingResource``; ``stream`` returns a blocking iterator of token events."""

    def sample(
        self,
        model: str,
        prompt: PromptLike,
        *,
        num_samples: int = 1,
        sampling_params: SamplingParams | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SampleResponse:
        return self._call(  # type: ignore[no-any-return]
            "sample",
            model,
            prompt,
            num_samples=num_samples,
            sampling_params=sampling_params,
            idempotency_key=idempotency_key,
        )

    def stream(
        self,
        model: str,
        prompt: PromptLike,
        *,
        num_samples: int = 1,
        sampling_params: SamplingParams | dict[str, Any] | None = None,
    ) -> SyncSampleStream:
        from ._client import SyncSampleStream

        stream: SampleStream = self._call(
            "stream", model, prompt, num_samples=num_samples, sampling_params=sampling_params
        )
        return SyncSampleStream(stream, self._runner)

    def compute_logprobs(
        self, model: str, prompt: ModelInput | Sequence[int]
    ) -> ComputeLogprobsResponse:
        return self._call("compute_logprobs", model, prompt)  # type: ignore[no-any-return]


class SyncImagesResource(_SyncResource):
    """Sync ``ImagesResource``."""

    def generate(
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
        return self._call(  # type: ignore[no-any-return]
            "generate",
            model,
            prompt,
            negative_prompt=negative_prompt,
            steps=steps,
            guidance_scale=guidance_scale,
            width=width,
            height=height,
            seed=seed,
            n=n,
        )


class SyncVisionResource(_SyncResource):
    """Sync ``VisionResource``."""

    def generate(
        self,
        model: str,
        images: ImageLike | Sequence[ImageLike],
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> VisionGenerateResponse:
        return self._call(  # type: ignore[no-any-return]
            "generate",
            model,
            images,
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
        )


class SyncTrainingResource(_SyncResource):
    """Sync ``TrainingResource``."""

    def create_run(
        self,
        base_model: str,
        *,
        rank: int = 8,
        seed: int | None = None,
        target_modules: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> TrainingRun:
        return self._call(  # type: ignore[no-any-return]
            "create_run",
            base_model,
            rank=rank,
            seed=seed,
            target_modules=target_modules,
            idempotency_key=idempotency_key,
        )

    def list_runs(self) -> list[TrainingRun]:
        return self._call("list_runs")  # type: ignore[no-any-return]

    def get_run(self, run_id: str) -> TrainingRun:
        return self._call("get_run", run_id)  # type: ignore[no-any-return]

    def forward_backward(
        self,
        run_id: str,
        data: Sequence[Datum | dict[str, Any]],
        loss_fn: str = "cross_entropy",
        *,
        idempotency_key: str | None = None,
    ) -> ForwardBackwardResponse:
        return self._call(  # type: ignore[no-any-return]
            "forward_backward", run_id, data, loss_fn, idempotency_key=idempotency_key
        )

    def optim_step(
        self,
        run_id: str,
        adam_params: AdamParams | dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> OptimStepResponse:
        return self._call(  # type: ignore[no-any-return]
            "optim_step", run_id, adam_params, idempotency_key=idempotency_key
        )

    def save_checkpoint(
        self, run_id: str, name: str, *, kind: str = "weights", idempotency_key: str | None = None
    ) -> Checkpoint:
        return self._call(  # type: ignore[no-any-return]
            "save_checkpoint", run_id, name, kind=kind, idempotency_key=idempotency_key
        )

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        return self._call("list_checkpoints", run_id)  # type: ignore[no-any-return]

    def load(
        self,
        run_id: str,
        checkpoint: str,
        *,
        with_optimizer: bool = False,
        idempotency_key: str | None = None,
    ) -> LoadCheckpointResponse:
        return self._call(  # type: ignore[no-any-return]
            "load",
            run_id,
            checkpoint,
            with_optimizer=with_optimizer,
            idempotency_key=idempotency_key,
        )

    def create_sampler(
        self, run_id: str, checkpoint: str, *, idempotency_key: str | None = None
    ) -> CreateSamplerResponse:
        return self._call(  # type: ignore[no-any-return]
            "create_sampler", run_id, checkpoint, idempotency_key=idempotency_key
        )


class SyncFuturesResource(_SyncResource):
    """Sync ``FuturesResource``."""

    def submit(self, path: str, body: Any, *, idempotency_key: str | None = None) -> FutureAccepted:
        return self._call(  # type: ignore[no-any-return]
            "submit", path, body, idempotency_key=idempotency_key
        )

    def retrieve(self, request_id: str, *, timeout: float = 30.0) -> FutureResult:
        return self._call("retrieve", request_id, timeout=timeout)  # type: ignore[no-any-return]

    def wait(
        self,
        request_id: str,
        cast_to: type[T],
        *,
        poll_timeout: float = 30.0,
        deadline: float | None = None,
    ) -> T:
        return self._call(  # type: ignore[no-any-return]
            "wait", request_id, cast_to, poll_timeout=poll_timeout, deadline=deadline
        )


__all__ = [
    "SyncFuturesResource",
    "SyncImagesResource",
    "SyncModelsResource",
    "SyncSamplingResource",
    "SyncServiceResource",
    "SyncTrainingResource",
    "SyncVisionResource",
]
