"""The native /api/v1 API against a real uvicorn server on the tiny presets."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from workbench_core.protocol import (
    Capabilities,
    ComputeLogprobsResponse,
    FutureResult,
    ImageGenerateResponse,
    SampleResponse,
    TokenizerInfo,
    VisionGenerateResponse,
)
from workbench_core.sse import SSEDecoder


def png_b64(color: tuple[int, int, int] = (200, 30, 30), size: int = 64) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_healthz_and_readyz_answer_ok_once_models_load(server: Any) -> None:
    with server.client() as c:
        assert c.get("/api/v1/healthz").json()["status"] == "ok"
        ready = c.get("/api/v1/readyz")
        assert ready.status_code == 200
        assert set(ready.json()["models"]) >= {"tiny-llama", "tiny-sd", "tiny-qwen-vl"}


def test_capabilities_list_models_with_kind_context_and_batching(server: Any) -> None:
    with server.client() as c:
        caps = Capabilities.model_validate(c.get("/api/v1/capabilities").json())
    by_name = {m.name: m for m in caps.models if m.kind != "training"}
    assert by_name["tiny-llama"].kind == "text"
    assert by_name["tiny-llama"].context_length == 1024
    assert by_name["tiny-llama"].max_batch_size == 16
    assert by_name["tiny-sd"].kind == "image"
    assert by_name["tiny-qwen-vl"].kind == "vision"
    assert any(m.kind == "training" for m in caps.models)
    assert {"tiny-llama", "tiny-sd", "tiny-qwen-vl"} <= {
        s.model_name for s in caps.supported_models
    }


def test_tokenizer_endpoint_exports_a_loadable_tokenizer(server: Any) -> None:
    from tokenizers import Tokenizer

    with server.client() as c:
        info = TokenizerInfo.model_validate(c.get("/api/v1/models/tiny-llama/tokenizer").json())
        sampled = c.post(
            "/api/v1/sample",
            json={
                "model": "tiny-llama",
                "prompt": "hello world",
                "sampling_params": {"max_tokens": 1},
            },
        ).json()
    tok = Tokenizer.from_str(info.tokenizer_json)
    assert info.chat_template
    ids = tok.encode("hello world").ids
    # The server's prompt token count matches a client tokenizing with the exported file.
    assert sampled["prompt_tokens"] in (len(ids), len(ids) + 1)


def test_sample_returns_sequences_with_tokens_text_and_logprobs(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/sample",
            json={
                "model": "tiny-llama",
                "prompt": "The cat",
                "num_samples": 3,
                "sampling_params": {"max_tokens": 6, "temperature": 0.8, "seed": 7},
            },
        )
    assert r.status_code == 200, r.text
    resp = SampleResponse.model_validate(r.json())
    assert len(resp.sequences) == 3
    for seq in resp.sequences:
        assert 1 <= len(seq.tokens) <= 6
        assert seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens)
        assert all(lp <= 0 for lp in seq.logprobs)
    assert resp.prompt_tokens > 0


def test_sample_is_reproducible_with_a_seed(server: Any) -> None:
    body = {
        "model": "tiny-llama",
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [5, 6, 7, 8]}]},
        "sampling_params": {"max_tokens": 8, "temperature": 1.0, "seed": 123},
    }
    with server.client() as c:
        a = c.post("/api/v1/sample", json=body).json()
        b = c.post("/api/v1/sample", json=body).json()
    assert a["sequences"][0]["tokens"] == b["sequences"][0]["tokens"]


def test_sample_stream_sends_token_events_then_done(server: Any) -> None:
    decoder = SSEDecoder()
    events = []
    with (
        server.client() as c,
        c.stream(
            "POST",
            "/api/v1/sample",
            json={
                "model": "tiny-llama",
                "prompt": [{"role": "user", "content": "hi"}],
                "stream": True,
                "sampling_params": {"max_tokens": 5, "seed": 1},
            },
        ) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_bytes():
            events += decoder.feed(chunk)
    kinds = [e.event for e in events]
    assert kinds[-1] == "done" and "token" in kinds
    done = SampleResponse.model_validate(events[-1].json())
    streamed = [e.json()["token"] for e in events if e.event == "token"]
    assert streamed == done.sequences[0].tokens


def test_compute_logprobs_gives_null_then_one_value_per_token(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/compute_logprobs",
            json={"model": "tiny-llama", "prompt": {"chunks": [{"tokens": [3, 9, 27, 81]}]}},
        )
    resp = ComputeLogprobsResponse.model_validate(r.json())
    assert resp.logprobs[0] is None
    assert len(resp.logprobs) == 4
    assert all(v is not None and v < 0 for v in resp.logprobs[1:])


def test_images_generate_returns_decodable_pngs_of_the_requested_size(
    server: Any,
) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/images/generate",
            json={"model": "tiny-sd", "prompt": "a red square", "steps": 2, "n": 2, "seed": 3},
        )
    assert r.status_code == 200, r.text
    resp = ImageGenerateResponse.model_validate(r.json())
    assert len(resp.images) == 2 and resp.seed == 3
    img = Image.open(io.BytesIO(base64.b64decode(resp.images[0].b64_png)))
    assert img.format == "PNG" and img.size == (32, 32)


def test_vision_generate_answers_text_for_an_image(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/vision/generate",
            json={
                "model": "tiny-qwen-vl",
                "images": ["data:image/png;base64," + png_b64()],
                "prompt": "What color?",
                "max_tokens": 4,
            },
        )
    assert r.status_code == 200, r.text
    resp = VisionGenerateResponse.model_validate(r.json())
    assert 1 <= len(resp.tokens) <= 4
    assert resp.finish_reason in ("stop", "length")


def test_vision_rejects_bytes_that_are_not_an_image(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/vision/generate",
            json={
                "model": "tiny-qwen-vl",
                "images": [base64.b64encode(b"definitely not a png").decode()],
                "prompt": "hi",
            },
        )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "images.0"


def test_wait_false_answers_202_and_the_future_resolves(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/sample?wait=false",
            json={"model": "tiny-llama", "prompt": "abc", "sampling_params": {"max_tokens": 3}},
        )
        assert r.status_code == 202
        rid = r.json()["request_id"]
        fut = FutureResult.model_validate(
            c.post("/api/v1/futures/retrieve", json={"request_id": rid, "timeout": 60}).json()
        )
    assert fut.status == "done"
    assert SampleResponse.model_validate(fut.result).sequences


def test_image_future_reports_denoising_progress(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/images/generate?wait=false",
            json={"model": "tiny-sd", "prompt": "a red square", "steps": 3, "seed": 3},
        )
        assert r.status_code == 202, r.text
        rid = r.json()["request_id"]
        fut = FutureResult.model_validate(
            c.post("/api/v1/futures/retrieve", json={"request_id": rid, "timeout": 60}).json()
        )
    assert fut.status == "done"
    assert fut.progress == {"step": 3, "total": 3}
    assert ImageGenerateResponse.model_validate(fut.result).images


def test_context_overflow_with_wait_false_is_rejected_before_any_future(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/sample?wait=false",
            json={
                "model": "tiny-llama",
                "prompt": {"chunks": [{"tokens": [1]}]},
                "sampling_params": {"max_tokens": 2000},
            },
        )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "sampling_params.max_tokens"


def test_failed_future_reports_the_error_with_its_status(server: Any) -> None:
    with server.client() as c:
        r = c.post("/api/v1/training/runs/run_missing/optim_step?wait=false", json={})
        assert r.status_code == 202
        fut = FutureResult.model_validate(
            c.post(
                "/api/v1/futures/retrieve",
                json={"request_id": r.json()["request_id"], "timeout": 60},
            ).json()
        )
    assert fut.status == "error"
    assert fut.http_status == 404
    assert fut.error is not None and fut.error.param == "run_id"


def test_unknown_future_is_404_naming_request_id(server: Any) -> None:
    with server.client() as c:
        r = c.post("/api/v1/futures/retrieve", json={"request_id": "fut_nope", "timeout": 0})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "request_id"


def test_request_id_is_echoed_and_put_in_error_bodies(server: Any) -> None:
    with server.client() as c:
        ok = c.get("/api/v1/healthz", headers={"X-Request-ID": "my-trace-123"})
        assert ok.headers["x-request-id"] == "my-trace-123"
        bad = c.post("/api/v1/sample", json={"model": "no-such-model", "prompt": "x"})
    assert bad.status_code == 404
    assert bad.json()["error"]["request_id"] == bad.headers["x-request-id"]
    assert bad.json()["error"]["param"] == "model"
