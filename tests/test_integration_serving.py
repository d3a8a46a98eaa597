"""Client SDK and the ``openai`` package against serving inside ``workbench dev``, over HTTP."""

from __future__ import annotations

import base64
import io

import pytest
from wb_integration import DevServer

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(size: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_client_samples_text_through_the_combined_server(devserver: DevServer) -> None:
    from workbench_client import Workbench

    with Workbench(base_url=devserver.base_url) as wb:
        out = wb.sampling.sample(
            "tiny-llama",
            "The quick brown fox",
            num_samples=2,
            sampling_params={"max_tokens": 6, "temperature": 0.0, "seed": 1},
        )
    assert len(out.sequences) == 2
    assert all(1 <= len(s.tokens) <= 6 for s in out.sequences)
    assert out.sequences[0].tokens == out.sequences[1].tokens  # greedy is deterministic
    assert out.prompt_tokens > 0


async def test_client_streams_tokens_as_server_sent_events(devserver: DevServer) -> None:
    from workbench_client import AsyncWorkbench

    async with AsyncWorkbench(base_url=devserver.base_url) as wb:
        stream = await wb.sampling.stream(
            "tiny-llama", "Once upon a time", sampling_params={"max_tokens": 5, "seed": 3}
        )
        events = [ev async for ev in stream]
    assert 1 <= len(events) <= 5
    assert all(ev.index == 0 for ev in events)


def test_client_generates_an_image_and_describes_it(devserver: DevServer) -> None:
    from workbench_client import Workbench

    with Workbench(base_url=devserver.base_url, timeout=120.0) as wb:
        images = wb.images.generate(
            model="tiny-sd", prompt="a red square", steps=2, width=32, height=32, seed=7
        )
        png = base64.b64decode(images.images[0].b64_png)
        assert png.startswith(PNG_MAGIC)
        data_url = "data:image/png;base64," + base64.b64encode(_png()).decode()
        vision = wb.vision.generate(
            model="tiny-qwen-vl", images=[data_url], prompt="Describe this image.", max_tokens=4
        )
    assert 1 <= len(vision.tokens) <= 4


def test_openai_package_talks_to_the_v1_endpoints(devserver: DevServer) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{devserver.base_url}/v1", api_key="dev", max_retries=0)
    ids = {m.id for m in client.models.list().data}
    assert "tiny-llama" in ids
    chat = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=6,
        temperature=0,
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and 1 <= chat.usage.completion_tokens <= 6
    chunks = list(
        client.chat.completions.create(
            model="tiny-llama",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
            stream=True,
        )
    )
    assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")
    completion = client.completions.create(model="tiny-llama", prompt="The sun", max_tokens=3)
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_bad_sampling_input_is_a_4xx_naming_the_field(devserver: DevServer) -> None:
    import httpx

    resp = httpx.post(
        f"{devserver.base_url}/api/v1/sample",
        json={"model": "tiny-llama", "prompt": "x", "sampling_params": {"max_tokens": -1}},
    )
    assert 400 <= resp.status_code < 500
    assert "max_tokens" in resp.json()["error"]["param"]
