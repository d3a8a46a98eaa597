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

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from workbench_core.cancel import CancelToken

ItemT = TypeVar("ItemT")
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
