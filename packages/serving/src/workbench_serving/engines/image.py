"""Text-to-image with diffusers, batched by shape.

Items that agree on (steps, guidance, width, height) run as one pipeline call: their prompts,
negative prompts and images-per-prompt are concatenated and each image gets its own
``torch.Generator`` (image ``j`` of a request seeded ``s`` uses seed ``s + j``, so asking for
that one image alone with seed ``s + j`` reproduces it). Progress and cancellation go through
the pipeline's ``callback_on_step_end``, which diffusers calls after every denoising step.
"""

from __future__ import annotations

import io
import secrets
import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from workbench_serving.engines.base import (
    EngineError,
    EngineKind,
    ImageItem,
    ImageResult,
    PretrainedEngine,
)

__all__ = ["ImageEngine"]

MAX_STEPS = 200
MAX_IMAGES = 8
MAX_SIDE = 2048


class ImageCancelled(EngineError):
    """The request was cancelled between denoising steps."""

    def __init__(self) -> None:
        super().__init__("image generation cancelled", param=None, status=499)


def _is_cancelled(token: Any) -> bool:
    return token is not None and bool(getattr(token, "cancelled", False))


class ImageEngine(PretrainedEngine):
    """A diffusers text-to-image pipeline loaded with ``DiffusionPipeline.from_pretrained``.

    Args:
        name: the model name clients use.
        path: a preset name, local directory or hub id (default: ``name``).
        device: default CUDA if available.
        dtype: default bf16 on CUDA, fp32 on CPU.
    """

    kind: EngineKind = "image"

    def __init__(
        self,
        name: str,
        path: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__(name, path, device, dtype)
        self.pipe: Any = None

    def load(self) -> None:
        """Load the pipeline with ``from_pretrained``; idempotent."""
        with self.lock:
            if self.pipe is not None:
                return
            from diffusers import DiffusionPipeline

            device, dtype, path = self._placement()
            with warnings.catch_warnings():
                # diffusers >= 0.36 prefers ``dtype``; ``torch_dtype`` works in every version
                # this package supports.
                warnings.simplefilter("ignore", FutureWarning)
                pipe: Any = DiffusionPipeline.from_pretrained(path, torch_dtype=dtype)
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            self._device, self._dtype = device, dtype
            self.pipe = pipe

    def _require_loaded(self) -> None:
        if self.pipe is None:
            self.load()

    @property
    def vae_scale_factor(self) -> int:
        self._require_loaded()
        return int(getattr(self.pipe, "vae_scale_factor", 8))

    @property
    def default_size(self) -> int:
        """The pipeline's native resolution (UNet sample size x VAE scale factor)."""
        self._require_loaded()
        unet = getattr(self.pipe, "unet", None)
        sample = getattr(getattr(unet, "config", None), "sample_size", 64)
        if isinstance(sample, list | tuple):
            sample = sample[0]
        return int(sample) * self.vae_scale_factor

    def describe(self) -> dict[str, Any]:
        self._require_loaded()
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "pipeline": type(self.pipe).__name__,
            "device": str(self._device),
            "dtype": str(self._dtype).removeprefix("torch."),
            "default_size": self.default_size,
            "max_steps": MAX_STEPS,
            "max_images": MAX_IMAGES,
        }

    def batch_key(self, item: ImageItem) -> Hashable:
        """One pipeline call needs one step count, guidance scale and image size."""
        return (item.steps, float(item.guidance_scale), item.width, item.height)

    def validate(self, item: ImageItem) -> None:
        """Raise ``EngineError`` naming the field if ``item`` cannot be served."""
        if not isinstance(item.prompt, str) or not item.prompt.strip():
            raise EngineError("prompt must be a non-empty string", param="prompt")
        if not 1 <= item.steps <= MAX_STEPS:
            raise EngineError(f"steps must be in [1, {MAX_STEPS}]", param="steps")
        if not 0.0 <= item.guidance_scale <= 100.0:
            raise EngineError("guidance_scale must be in [0, 100]", param="guidance_scale")
        for side in ("width", "height"):
            value = getattr(item, side)
            if not 8 <= value <= MAX_SIDE or value % 8:
                raise EngineError(f"{side} must be a multiple of 8 in [8, {MAX_SIDE}]", param=side)
        if not 1 <= item.n <= MAX_IMAGES:
            raise EngineError(f"n must be in [1, {MAX_IMAGES}]", param="n")
        if item.seed is not None and not 0 <= item.seed < 2**63 - MAX_IMAGES:
            raise EngineError("seed must be a non-negative 63-bit integer", param="seed")

    def run_batch(self, items: Sequence[ImageItem]) -> list[ImageResult | BaseException]:
        """Generate images; items with different shapes run as separate pipeline calls."""
        with self.lock:
            self._require_loaded()
            results: list[ImageResult | BaseException | None] = [None] * len(items)
            groups: dict[Hashable, list[int]] = {}
            for i, item in enumerate(items):
                try:
                    self.validate(item)
                except EngineError as exc:
                    results[i] = exc
                    continue
                groups.setdefault(self.batch_key(item), []).append(i)
            for indices in groups.values():
                for i, res in zip(
                    indices, self._run_group([items[i] for i in indices]), strict=True
                ):
                    results[i] = res
            return [r if r is not None else RuntimeError("item not run") for r in results]

    def _run_group(self, items: list[ImageItem]) -> list[ImageResult | BaseException]:
        import torch

        seeds = [it.seed if it.seed is not None else secrets.randbits(48) for it in items]
        prompts: list[str] = []
        negatives: list[str] = []
        generators: list[torch.Generator] = []
        owners: list[int] = []
        for k, (it, seed) in enumerate(zip(items, seeds, strict=True)):
            for j in range(it.n):
                prompts.append(it.prompt)
                negatives.append(it.negative_prompt or "")
                gen = torch.Generator(device="cpu")
                gen.manual_seed(seed + j)
                generators.append(gen)
                owners.append(k)
        first = items[0]
        steps_done = [0]

        def on_step_end(
            pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            steps_done[0] = step + 1
            live = [it for it in items if not _is_cancelled(it.cancel)]
            for it in live:
                if it.on_progress is not None:
                    try:
                        it.on_progress(step + 1, first.steps)
                    except Exception:  # a progress consumer that went away is not fatal
                        it.on_progress = None
            if not live:
                pipe._interrupt = True  # diffusers' own early-exit flag, checked every step
            return callback_kwargs

        if all(_is_cancelled(it.cancel) for it in items):
            return [ImageCancelled() for _ in items]
        # Latents are drawn on the CPU from each image's generator, so a seed gives the same
        # image on any device; diffusers accepts a list of generators for exactly this.
        latents = self._initial_latents(generators, first.width, first.height)
        output = self.pipe(
            prompt=prompts,
            negative_prompt=negatives if first.guidance_scale > 1.0 else None,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance_scale,
            width=first.width,
            height=first.height,
            latents=latents,
            output_type="pil",
            callback_on_step_end=on_step_end,
        )
        images = output.images
        out: list[ImageResult | BaseException] = []
        for k, (it, seed) in enumerate(zip(items, seeds, strict=True)):
            if _is_cancelled(it.cancel):
                out.append(ImageCancelled())
                continue
            pngs = [_png(img) for img, owner in zip(images, owners, strict=True) if owner == k]
            out.append(ImageResult(images_png=pngs, seed=seed))
        return out

    def _initial_latents(self, generators: list[Any], width: int, height: int) -> Any:
        import torch

        unet = self.pipe.unet
        channels = int(unet.config.in_channels)
        factor = self.vae_scale_factor
        shape = (1, channels, height // factor, width // factor)
        latents = torch.cat(
            [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
        )
        # The pipeline scales given latents by the scheduler's init_noise_sigma itself.
        return latents.to(self._device, self._dtype)


def _png(image: Any) -> bytes:
    """Encode a PIL image as PNG with no metadata, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
