"""ImageEngine on the tiny-sd preset: PNGs at the asked size, seeds, progress, cancel."""

from __future__ import annotations

import io
from typing import Any

import _engine_fixtures
import pytest
from PIL import Image

from workbench_core.cancel import CancelToken
from workbench_serving.engines import EngineError, ImageEngine, ImageItem, ImageResult


@pytest.fixture(scope="module")
def engine() -> ImageEngine:
    eng = _engine_fixtures.image_engine()
    assert isinstance(eng, ImageEngine)
    return eng


def run_one(engine: ImageEngine, item: ImageItem) -> ImageResult:
    (result,) = engine.run_batch([item])
    assert isinstance(result, ImageResult), result
    return result


def test_images_are_pngs_of_the_requested_size(engine: ImageEngine) -> None:
    res = run_one(engine, ImageItem("a red square", steps=2, width=40, height=24, seed=1, n=2))
    assert len(res.images_png) == 2
    for png in res.images_png:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        img = Image.open(io.BytesIO(png))
        img.load()
        assert img.size == (40, 24)
        assert img.mode == "RGB"
    assert res.seed == 1


def test_same_seed_same_bytes_and_other_seed_other_image(engine: ImageEngine) -> None:
    a = run_one(engine, ImageItem("a cat", steps=3, seed=42))
    b = run_one(engine, ImageItem("a cat", steps=3, seed=42))
    c = run_one(engine, ImageItem("a cat", steps=3, seed=43))
    assert a.images_png == b.images_png
    assert a.images_png != c.images_png


def test_image_j_of_a_request_is_reproduced_by_seed_plus_j(engine: ImageEngine) -> None:
    many = run_one(engine, ImageItem("a dog", steps=2, seed=100, n=3))
    third = run_one(engine, ImageItem("a dog", steps=2, seed=102))
    assert many.images_png[2] == third.images_png[0]
    assert len(set(many.images_png)) == 3


def test_items_of_one_shape_share_a_call_and_keep_their_own_seeds(engine: ImageEngine) -> None:
    first = ImageItem("a red square", steps=2, seed=5)
    second = ImageItem("a blue circle", negative_prompt="red", steps=2, seed=6)
    other_shape = ImageItem("a tree", steps=2, width=16, height=16, seed=7)
    assert engine.batch_key(first) == engine.batch_key(second) != engine.batch_key(other_shape)
    together = engine.run_batch([first, second, other_shape])
    assert all(isinstance(r, ImageResult) for r in together)
    alone = run_one(engine, ImageItem("a red square", steps=2, seed=5))
    img_together = Image.open(io.BytesIO(together[0].images_png[0]))  # type: ignore[union-attr]
    img_alone = Image.open(io.BytesIO(alone.images_png[0]))
    # Batched convolutions may round differently in the last bit; pixels agree within 1.
    diffs = [
        abs(x - y)
        for p, q in zip(img_together.getdata(), img_alone.getdata(), strict=True)
        for x, y in zip(p, q, strict=True)
    ]
    assert max(diffs) <= 1
    assert Image.open(io.BytesIO(together[2].images_png[0])).size == (16, 16)  # type: ignore[union-attr]


def test_progress_callback_counts_every_step(engine: ImageEngine) -> None:
    seen: list[tuple[int, int]] = []
    run_one(engine, ImageItem("x", steps=5, seed=0, on_progress=lambda s, t: seen.append((s, t))))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_cancel_between_steps_stops_the_request(engine: ImageEngine) -> None:
    token = CancelToken()
    seen: list[int] = []

    def progress(step: int, total: int) -> None:
        seen.append(step)
        if step == 2:
            token.cancel("test")

    (result,) = engine.run_batch(
        [ImageItem("x", steps=20, seed=0, on_progress=progress, cancel=token)]
    )
    assert isinstance(result, EngineError)
    assert result.status == 499
    assert seen == [1, 2]  # the pipeline stopped at the next step boundary


def test_a_cancelled_item_does_not_stop_its_batch_neighbours(engine: ImageEngine) -> None:
    token = CancelToken()
    token.cancel("gone")
    cancelled, kept = engine.run_batch(
        [ImageItem("x", steps=2, seed=1, cancel=token), ImageItem("y", steps=2, seed=2)]
    )
    assert isinstance(cancelled, EngineError)
    assert isinstance(kept, ImageResult) and len(kept.images_png) == 1


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"steps": 0}, "steps"),
        ({"width": 30}, "width"),
        ({"height": 0}, "height"),
        ({"n": 0}, "n"),
        ({"n": 100}, "n"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"seed": -5}, "seed"),
    ],
)
def test_bad_items_fail_with_the_field_named(
    engine: ImageEngine, changes: dict[str, Any], param: str
) -> None:
    kwargs: dict[str, Any] = {"prompt": "a cat", "steps": 2, **changes}
    bad, good = engine.run_batch([ImageItem(**kwargs), ImageItem("a cat", steps=1, seed=3)])
    assert isinstance(bad, EngineError) and bad.param == param and bad.status == 400
    assert isinstance(good, ImageResult)


def test_describe_reports_the_pipeline(engine: ImageEngine) -> None:
    info = engine.describe()
    assert info["kind"] == "image"
    assert info["pipeline"] == "StableDiffusionPipeline"
    assert info["default_size"] == 32
