"""Images + text -> text with the Qwen2.5-VL family.

The prompt goes through the processor's chat template with one ``{"type": "image"}`` content
part per image, so the processor expands each into ``<|vision_start|>`` + one
``<|image_pad|>`` per merged patch + ``<|vision_end|>``, exactly as the model was trained.

Each item runs its own ``generate`` call inside a forked, seeded RNG: ``generate`` draws from
the global torch RNG, so sharing one call between requests would make one request's seed
depend on its neighbours. Cancellation is a ``StoppingCriteria`` checked after every token.

Without torchvision, transformers cannot build Qwen2.5-VL's video processor and so refuses
``AutoProcessor``; the engine then assembles the same processor from its tokenizer and image
processor (both loaded with ``from_pretrained`` from the same directory), minus video.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from workbench_serving.engines.base import (
    EngineError,
    EngineKind,
    PretrainedEngine,
    VisionItem,
    VisionResult,
)

__all__ = ["VisionEngine"]

MAX_IMAGES = 8


def _is_cancelled(token: Any) -> bool:
    return token is not None and bool(getattr(token, "cancelled", False))


def _load_processor(path: Path | str) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path)
    except (ImportError, ValueError, TypeError, AttributeError) as exc:
        if "torchvision" not in str(exc).lower() and "video" not in str(exc).lower():
            raise
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor

    class _ImageOnlyProcessor(Qwen2_5_VLProcessor):  # type: ignore[misc]
        """Qwen2.5-VL's processor with no video processor (which needs torchvision)."""

        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = AutoImageProcessor.from_pretrained(path)
    template = getattr(tokenizer, "chat_template", None)
    local = Path(str(path)) / "chat_template.jinja"
    if local.exists():
        template = local.read_text()
    return _ImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template
    )


class VisionEngine(PretrainedEngine):
    """A vision-language model loaded with ``AutoProcessor`` + ``from_pretrained``.

    Args:
        name: the model name clients use.
        path: a preset name, local directory or hub id (default: ``name``).
        device: default CUDA if available.
        dtype: default bf16 on CUDA, fp32 on CPU.
    """

    kind: EngineKind = "vision"

    def __init__(
        self,
        name: str,
        path: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__(name, path, device, dtype)
        self.model: Any = None
        self.processor: Any = None
        self._eos: set[int] = set()
        self._path: Path | str | None = None

    def load(self) -> None:
        """Load processor and model with ``from_pretrained``; idempotent."""
        with self.lock:
            if self.model is not None:
                return
            from transformers import AutoModelForImageTextToText

            device, dtype, path = self._placement()
            processor = _load_processor(path)
            model: Any = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
            model.to(device)
            model.eval()
            eos: set[int] = set()
            for value in (
                model.generation_config.eos_token_id,
                processor.tokenizer.eos_token_id,
            ):
                if isinstance(value, int):
                    eos.add(value)
                elif isinstance(value, list | tuple):
                    eos.update(int(v) for v in value)
            self._eos = eos
            self._path = path
            self._device, self._dtype = device, dtype
            self.processor = processor
            self.model = model

    def _require_loaded(self) -> None:
        if self.model is None:
            self.load()

    @property
    def context_length(self) -> int:
        self._require_loaded()
        text = self.model.config.get_text_config()
        return int(getattr(text, "max_position_embeddings", 2048))

    def tokenizer_files(self) -> dict[str, Any]:
        """The processor's tokenizer, chat template and special tokens (see ``TextEngine``)."""
        from workbench_serving.engines.text import tokenizer_files

        self._require_loaded()
        files = tokenizer_files(self.processor.tokenizer, self._path, sorted(self._eos))
        template = getattr(self.processor, "chat_template", None)
        if isinstance(template, str):
            files["chat_template"] = template
        return files

    def describe(self) -> dict[str, Any]:
        self._require_loaded()
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "architecture": type(self.model).__name__,
            "context_length": self.context_length,
            "device": str(self._device),
            "dtype": str(self._dtype).removeprefix("torch."),
            "max_images": MAX_IMAGES,
        }

    def batch_key(self, item: VisionItem) -> Hashable:
        """Any vision items may share a batch; each still runs its own seeded ``generate``."""
        return "vision"

    def validate(self, item: VisionItem) -> None:
        """Raise ``EngineError`` naming the field if ``item`` cannot be served."""
        from PIL import Image

        if not isinstance(item.prompt, str) or not item.prompt.strip():
            raise EngineError("prompt must be a non-empty string", param="prompt")
        if not item.images or len(item.images) > MAX_IMAGES:
            raise EngineError(f"images must hold 1 to {MAX_IMAGES} images", param="images")
        if any(not isinstance(img, Image.Image) for img in item.images):
            raise EngineError("images must be decoded images", param="images")
        if item.max_tokens < 1 or item.max_tokens > self.context_length:
            raise EngineError(
                f"max_tokens must be in [1, {self.context_length}]", param="max_tokens"
            )
        if not item.temperature >= 0.0:
            raise EngineError("temperature must be >= 0", param="temperature")

    def run_batch(self, items: Sequence[VisionItem]) -> list[VisionResult | BaseException]:
        """Answer each item; one result or one exception per item, in order."""
        with self.lock:
            self._require_loaded()
            out: list[VisionResult | BaseException] = []
            for item in items:
                try:
                    self.validate(item)
                    out.append(self._generate(item))
                except EngineError as exc:
                    out.append(exc)
            return out

    def _generate(self, item: VisionItem) -> VisionResult:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        content: list[dict[str, Any]] = [{"type": "image"} for _ in item.images]
        content.append({"type": "text", "text": item.prompt})
        messages = [{"role": "user", "content": content}]
        text = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        images = [img.convert("RGB") for img in item.images]
        inputs = self.processor(text=[text], images=images, return_tensors="pt")
        inputs = inputs.to(self._device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._dtype)
        prompt_len = int(inputs["input_ids"].shape[1])
        if prompt_len + item.max_tokens > self.context_length:
            raise EngineError(
                f"prompt ({prompt_len} tokens with images) + max_tokens exceeds the context "
                f"length {self.context_length}",
                param="max_tokens",
            )

        cancel = item.cancel
        if _is_cancelled(cancel):
            return VisionResult(text="", tokens=[], finish_reason="cancelled")

        class _Cancel(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = _is_cancelled(cancel)
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

        sampled = item.temperature > 0.0
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": item.max_tokens,
            "do_sample": sampled,
            "stopping_criteria": StoppingCriteriaList([_Cancel()]),
            "pad_token_id": self.processor.tokenizer.pad_token_id,
        }
        if sampled:
            gen_kwargs.update(temperature=item.temperature, top_k=0, top_p=1.0)
        devices = [self._device] if getattr(self._device, "type", "cpu") == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if item.seed is not None:
                torch.manual_seed(item.seed)
            output = self.model.generate(**inputs, **gen_kwargs)
        tokens = [int(t) for t in output[0, prompt_len:].tolist()]
        if _is_cancelled(cancel):
            reason = "cancelled"
        elif tokens and tokens[-1] in self._eos:
            reason = "stop"
        else:
            reason = "length"
        answer = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
        return VisionResult(text=answer, tokens=tokens, finish_reason=reason)  # type: ignore[arg-type]
