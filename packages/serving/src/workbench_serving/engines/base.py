"""The contract between the scheduler and the engines.

An engine sees a list in and returns a list out (the LitServe shape): batching,
queueing, deadlines and backpressure live once in the scheduler, never inside an
engine. Every ``run_batch`` runs in the scheduler's worker thread, which owns the
device; engines therefore never touch the event loop.

Items are plain dataclasses, not wire types: the HTTP layer validates a request
against ``workbench_core.protocol`` and turns it into an item, so engines stay
usable (and benchmarkable) without a server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

if TYPE_CHECKING:  # engines only read ``.cancelled``; any token with that attribute works
    from workbench_core.cancel import CancelToken
    from workbench_serving.engines.constraints import ConstraintSpec

ItemT = TypeVar("ItemT", contravariant=True)
ResultT = TypeVar("ResultT")

EngineKind = Literal["text", "image", "vision", "training"]


class EngineError(Exception):
    """A request an engine cannot serve; the HTTP layer maps it to a 4xx naming ``param``."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


# ---------------------------------------------------------------- text


@dataclass
class SampleItem:
    """One sampling request: ``num_samples`` continuations of one prompt."""

    prompt_tokens: list[int]
    max_tokens: int = 16
    num_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    stop: list[str] = field(default_factory=list)  # stop strings
    stop_token_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    adapter: str | None = None  # LoRA adapter name (a training run's weights or a checkpoint)
    # Called from the worker thread as tokens are produced: (sample_index, token_id, text_delta).
    on_token: Callable[[int, int, str], None] | None = None
    cancel: CancelToken | None = None
    # A grammar (JSON schema, JSON object, regex, Lark) every sample's output must match; applied
    # as a token mask in the batched sampler, so constrained and free items share a batch.
    constraint: ConstraintSpec | None = None


@dataclass
class SampledSequence:
    tokens: list[int]
    text: str
    logprobs: list[float]
    finish_reason: Literal["stop", "length", "cancelled"]


@dataclass
class SampleResult:
    sequences: list[SampledSequence]
    prompt_tokens: int


@dataclass
class LogprobsItem:
    """Per-token logprobs of a given sequence (``None`` for the first token)."""

    tokens: list[int]
    adapter: str | None = None


@dataclass
class LogprobsResult:
    """What ``TextEngine.run_batch`` returns for a ``LogprobsItem``."""

    logprobs: list[float | None]


# ---------------------------------------------------------------- image


@dataclass
class ImageItem:
    prompt: str
    negative_prompt: str | None = None
    steps: int = 4
    guidance_scale: float = 5.0
    width: int = 32
    height: int = 32
    seed: int | None = None
    n: int = 1
    # Called from the worker thread after each denoising step: (step, total_steps).
    on_progress: Callable[[int, int], None] | None = None
    cancel: CancelToken | None = None


@dataclass
class ImageResult:
    images_png: list[bytes]
    seed: int


# ---------------------------------------------------------------- vision


@dataclass
class VisionItem:
    images: list[Any]  # PIL.Image.Image, already decoded and validated by the HTTP layer
    prompt: str
    max_tokens: int = 32
    temperature: float = 0.0
    seed: int | None = None
    cancel: CancelToken | None = None


@dataclass
class VisionResult:
    text: str
    tokens: list[int]
    finish_reason: Literal["stop", "length", "cancelled"]


# ---------------------------------------------------------------- training


TrainingOpKind = Literal[
    "create_run",
    "forward_backward",
    "optim_step",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "register_sampler",
    "get_run",
    "list_runs",
    "delete_run",
]


@dataclass
class TrainingOp:
    """One stateful training call; ``TrainingEngine.run_batch`` runs a list of them in order.

    ``payload`` holds the op's arguments as keyword arguments of the matching
    ``TrainingEngine`` method (``run_id`` excluded), e.g. ``{"data": [...],
    "loss_fn": "cross_entropy"}`` for ``forward_backward``.
    """

    kind: TrainingOpKind
    run_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingDatum:
    """One training sequence: per position, the target token and its loss weight.

    ``target_tokens[i]`` is the token the model should predict after reading
    ``tokens[: i + 1]`` (Tinker's convention); all three lists have the same length.
    """

    tokens: list[int]
    target_tokens: list[int]
    weights: list[float]
    # For the policy-gradient losses ("importance_sampling", "ppo"): the sampler's logprob of
    # each target token and its advantage, both aligned with target_tokens.
    logprobs: list[float] | None = None
    advantages: list[float] | None = None


@dataclass
class AdamParams:
    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0  # 0 = no clipping


@dataclass
class ForwardBackwardResult:
    loss: float  # weighted mean of the per-token loss: sum(w * loss_i) / sum(w)
    logprobs: list[list[float]]  # per datum, per position: logprob of target_tokens[i]
    num_tokens: int  # positions with non-zero weight


@dataclass
class RunInfo:
    run_id: str
    base_model: str
    rank: int
    seed: int
    target_modules: list[str]
    step: int
    created_at: float


@dataclass
class CheckpointInfo:
    run_id: str
    name: str
    kind: Literal["weights", "state"]
    step: int
    path: str
    created_at: float
    model_name: str  # adapter name a SampleItem can use: "<run_id>:<name>"


# ---------------------------------------------------------------- engines


class Engine(Protocol, Generic[ItemT, ResultT]):
    """What the scheduler drives. ``load`` and ``run_batch`` run in the worker thread."""

    kind: EngineKind
    name: str

    def load(self) -> None:
        """Load weights (``from_pretrained``) onto the device; idempotent."""

    def batch_key(self, item: ItemT) -> Hashable:
        """Items with equal keys may share one ``run_batch`` call."""

    def run_batch(self, items: Sequence[ItemT]) -> list[ResultT | BaseException]:
        """Run a batch; one result or one exception per item, in order."""

    def describe(self) -> dict[str, Any]:
        """Model facts for ``capabilities``: kind, context length, dtype, device, ..."""


class PretrainedEngine:
    """What every engine that loads weights shares: where they come from and where they go.

    Keeps the constructor arguments unresolved until ``load`` runs in the worker thread, so
    building an engine never touches torch, the device or the disk.

    Args:
        name: the model name clients use.
        path: a preset name, local directory or hub id (default: ``name``).
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA if available).
        dtype: ``"bfloat16"``, ``"float32"``, ... (default: bf16 on CUDA, fp32 on CPU).
    """

    def __init__(
        self,
        name: str,
        path: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        self.name = name
        self.source = str(path) if path is not None else name
        self._device_arg = device
        self._dtype_arg = dtype
        # Every use of the weights holds it (the training engine shares the text engine's).
        self.lock = threading.RLock()
        self._device: Any = None
        self._dtype: Any = None

    def _placement(self) -> tuple[Any, Any, Path | str]:
        """(device, dtype, local path or hub id) for ``from_pretrained``.

        Applies the torch thread setting and builds a tiny preset on first use.
        """
        from workbench_serving.engines._device import apply_thread_setting, pick_device
        from workbench_serving.presets import resolve_model

        device, dtype = pick_device(self._device_arg, self._dtype_arg)
        apply_thread_setting()
        return device, dtype, resolve_model(self.source)
