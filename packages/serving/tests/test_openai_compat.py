"""The official ``openai`` package, unchanged, against the /v1 API of a real server."""

from __future__ import annotations

import base64
import io
from typing import Any

import openai
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def oa(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def test_models_lists_every_served_model(oa: openai.OpenAI) -> None:
    ids = {m.id for m in oa.models.list()}
    assert {"tiny-llama", "tiny-sd", "tiny-qwen-vl"} <= ids
    assert oa.models.retrieve("tiny-llama").id == "tiny-llama"


def test_completion_returns_text_and_usage(oa: openai.OpenAI) -> None:
    c = oa.completions.create(model="tiny-llama", prompt="Once upon", max_tokens=5, n=2, seed=1)
    assert len(c.choices) == 2
    assert c.usage is not None and 1 <= c.usage.completion_tokens <= 10
    assert c.choices[0].finish_reason in ("stop", "length")


def test_chat_completion_applies_the_chat_template(oa: openai.OpenAI) -> None:
    chat = oa.chat.completions.create(
        model="tiny-llama",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello"},
        ],
        max_tokens=6,
        temperature=0,
    )
    assert chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    assert chat.usage.prompt_tokens > 5  # the template wrapped the two messages


def test_streamed_chat_matches_the_unstreamed_answer(oa: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": "tiny-llama",
        "messages": [{"role": "user", "content": "count"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    full = oa.chat.completions.create(**kwargs).choices[0].message.content
    stream = oa.chat.completions.create(stream=True, **kwargs)
    parts = []
    finish = None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(parts) == full
    assert finish in ("stop", "length")


def test_streamed_completion_yields_chunks(oa: openai.OpenAI) -> None:
    chunks = list(
        oa.completions.create(model="tiny-llama", prompt="abc", max_tokens=4, stream=True)
    )
    assert len(chunks) >= 2
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_with_an_image_url_part_goes_to_the_vision_model(oa: openai.OpenAI) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    chat = oa.chat.completions.create(
        model="tiny-qwen-vl",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
        max_tokens=4,
    )
    assert chat.usage.completion_tokens >= 1
    assert isinstance(chat.choices[0].message.content, str)


def test_images_generation_returns_b64_png(oa: openai.OpenAI) -> None:
    img = oa.images.generate(model="tiny-sd", prompt="a blue circle", n=1, size="32x32")
    assert img.data and img.data[0].b64_json
    png = Image.open(io.BytesIO(base64.b64decode(img.data[0].b64_json)))
    assert png.size == (32, 32)


def test_unknown_model_raises_not_found_error(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oa.chat.completions.create(
            model="gpt-nonexistent", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["param"] == "model"  # type: ignore[index]


def test_invalid_parameter_raises_bad_request_error_naming_it(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oa.completions.create(model="tiny-llama", prompt="x", max_tokens=-5)
    assert info.value.body["param"] == "max_tokens"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        oa.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "x"}], temperature=7
        )
    assert info.value.body["param"] == "temperature"  # type: ignore[index]


@pytest.mark.slow
def test_saved_lora_checkpoint_is_a_model_in_v1(server: Any, oa: openai.OpenAI) -> None:
    with server.client() as c:
        run = c.post("/api/v1/training/runs", json={"base_model": "tiny-llama"}).json()
        ck = c.post(f"/api/v1/training/runs/{run['id']}/checkpoints", json={"name": "v1"}).json()
    name = ck["model_name"]
    models = {m.id: m for m in oa.models.list()}
    assert name in models
    out = oa.completions.create(model=name, prompt="hello", max_tokens=3)
    assert out.model == name and out.choices
    chat = oa.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert chat.choices[0].message.content is not None
