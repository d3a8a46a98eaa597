"""VisionEngine on the tiny-qwen-vl preset: images + text in, text out."""

from __future__ import annotations

from typing import Any

import _engine_fixtures
import pytest
from PIL import Image

from workbench_core.cancel import CancelToken
from workbench_serving.engines import EngineError, VisionEngine, VisionItem, VisionResult


@pytest.fixture(scope="module")
def engine() -> VisionEngine:
    eng = _engine_fixtures.vision_engine()
    assert isinstance(eng, VisionEngine)
    return eng


def red(size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, (220, 30, 30))


def run_one(engine: VisionEngine, item: VisionItem) -> VisionResult:
    (result,) = engine.run_batch([item])
    assert isinstance(result, VisionResult), result
    return result


def test_answers_text_for_a_pil_image(engine: VisionEngine) -> None:
    res = run_one(engine, VisionItem(images=[red()], prompt="Describe this image.", max_tokens=8))
    assert isinstance(res.text, str)
    assert 1 <= len(res.tokens) <= 8
    assert res.finish_reason in ("stop", "length")
    assert res.text == engine.processor.tokenizer.decode(res.tokens, skip_special_tokens=True)


def test_the_image_reaches_the_model(engine: VisionEngine) -> None:
    # Greedy answers to the same question differ when only the picture differs.
    pictures = [red(), Image.new("RGB", (64, 64), (10, 200, 10)), Image.effect_noise((64, 64), 80)]
    answers = {
        tuple(run_one(engine, VisionItem(images=[p], prompt="What is this?", max_tokens=6)).tokens)
        for p in pictures
    }
    assert len(answers) > 1


def test_greedy_is_deterministic_and_sampling_follows_the_seed(engine: VisionEngine) -> None:
    images = [red(), Image.new("RGB", (40, 90), (0, 0, 255)).convert("L")]
    g1 = run_one(engine, VisionItem(images=images, prompt="Compare", max_tokens=8))
    g2 = run_one(engine, VisionItem(images=images, prompt="Compare", max_tokens=8))
    assert g1.tokens == g2.tokens
    s1 = VisionItem(images=images, prompt="Compare", max_tokens=8, temperature=1.0, seed=3)
    s2 = VisionItem(images=images, prompt="Compare", max_tokens=8, temperature=1.0, seed=3)
    s3 = VisionItem(images=images, prompt="Compare", max_tokens=8, temperature=1.0, seed=4)
    r1, r2, r3 = engine.run_batch([s1, s2, s3])
    assert isinstance(r1, VisionResult) and isinstance(r2, VisionResult)
    assert isinstance(r3, VisionResult)
    assert r1.tokens == r2.tokens != r3.tokens


def test_a_cancelled_request_stops_early(engine: VisionEngine) -> None:
    token = CancelToken()
    token.cancel("gone")
    res = run_one(
        engine, VisionItem(images=[red()], prompt="Describe", max_tokens=30, cancel=token)
    )
    assert res.finish_reason == "cancelled"
    assert res.tokens == [] and res.text == ""


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"images": []}, "images"),
        ({"images": ["not an image"]}, "images"),
        ({"prompt": "  "}, "prompt"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**6}, "max_tokens"),
        ({"temperature": -0.5}, "temperature"),
    ],
)
def test_bad_items_fail_with_the_field_named(
    engine: VisionEngine, changes: dict[str, Any], param: str
) -> None:
    kwargs: dict[str, Any] = {"images": [red()], "prompt": "hi", "max_tokens": 2, **changes}
    bad, good = engine.run_batch([VisionItem(**kwargs), VisionItem([red()], "hi", max_tokens=2)])
    assert isinstance(bad, EngineError) and bad.param == param
    assert isinstance(good, VisionResult)


def test_tokenizer_files_carry_the_vision_tokens_and_template(engine: VisionEngine) -> None:
    from tokenizers import Tokenizer

    files = engine.tokenizer_files()
    assert "<|image_pad|>" in files["additional_special_tokens"]
    assert "<|vision_start|>" in (files["chat_template"] or "")
    rebuilt = Tokenizer.from_str(files["tokenizer_json"])
    ids = rebuilt.encode("<|vision_start|><|image_pad|><|vision_end|>").ids
    assert ids == engine.processor.tokenizer.convert_tokens_to_ids(
        ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>"]
    )


def test_describe_reports_the_architecture(engine: VisionEngine) -> None:
    info = engine.describe()
    assert info["kind"] == "vision"
    assert info["architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert info["context_length"] == 512
