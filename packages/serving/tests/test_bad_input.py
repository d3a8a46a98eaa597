"""Malformed and out-of-range requests get a 4xx naming the field; never a 500.

Hand-written cases for the classic mistakes, then schemathesis against the server's own OpenAPI
schema (positive and negative generation, bounded examples) proving no input finds a 5xx.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

BAD_SAMPLES: list[tuple[Any, str]] = [
    ({"prompt": "x"}, "model"),
    ({"model": "tiny-llama"}, "prompt"),
    ({"model": "tiny-llama", "prompt": ""}, "prompt"),
    ({"model": "tiny-llama", "prompt": []}, "prompt"),
    ({"model": "tiny-llama", "prompt": 42}, "prompt"),
    ({"model": "tiny-llama", "prompt": "x", "num_samples": 10_000}, "num_samples"),
    ({"model": "tiny-llama", "prompt": "x", "num_samples": "two"}, "num_samples"),
    (
        {"model": "tiny-llama", "prompt": "x", "sampling_params": {"max_tokens": -1}},
        "sampling_params.max_tokens",
    ),
    (
        {"model": "tiny-llama", "prompt": "x", "sampling_params": {"max_tokens": 10**9}},
        "sampling_params.max_tokens",
    ),
    (
        {"model": "tiny-llama", "prompt": "x", "sampling_params": {"max_tokens": 4000}},
        "sampling_params.max_tokens",
    ),
    (
        {"model": "tiny-llama", "prompt": "x", "sampling_params": {"temperature": -1}},
        "sampling_params.temperature",
    ),
    (
        {"model": "tiny-llama", "prompt": "x", "sampling_params": {"top_p": 0}},
        "sampling_params.top_p",
    ),
    (
        {"model": "tiny-llama", "prompt": "x", "sampling_params": {"bogus": 1}},
        "sampling_params.bogus",
    ),
    ({"model": "tiny-llama", "prompt": {"chunks": [{"tokens": [10**6]}]}}, "prompt"),
    ({"model": "tiny-llama", "prompt": {"chunks": [{"tokens": [-3]}]}}, "prompt.chunks.0.tokens"),
    ({"model": "tiny-sd", "prompt": "x"}, "model"),
]


@pytest.mark.parametrize(("body", "param"), BAD_SAMPLES)
def test_bad_sample_request_is_4xx_naming_the_field(server: Any, body: Any, param: str) -> None:
    with server.client() as c:
        r = c.post("/api/v1/sample", json=body)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    assert err["request_id"] == r.headers["x-request-id"]


def test_bad_json_is_4xx_naming_the_body(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/sample",
            content=b'{"model": "tiny',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422 and r.json()["error"]["param"] == "body"
        r = c.post("/v1/completions", content=b"[1,2", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "body"


def test_oversized_body_is_413_and_the_server_keeps_serving(server: Any) -> None:
    huge = "a" * (3 * 1024 * 1024)
    with server.client() as c:
        r = c.post("/api/v1/sample", json={"model": "tiny-llama", "prompt": huge})
        assert r.status_code == 413 and r.json()["error"]["param"] == "body"
        assert c.get("/api/v1/healthz").status_code == 200


def test_image_bounds_from_settings_are_enforced(server: Any) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/images/generate", json={"model": "tiny-sd", "prompt": "x", "width": 512}
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "width"
        r = c.post("/api/v1/images/generate", json={"model": "tiny-sd", "prompt": "x", "width": 33})
        assert r.status_code == 422 and r.json()["error"]["param"] == "width"


@pytest.mark.parametrize(
    ("image", "param"),
    [
        ("data:text/plain;base64," + base64.b64encode(b"hi").decode(), "images.0"),
        ("data:image/png;base64,%%%", "images.0"),
        ("http://example.com/cat.png", "images.0"),
        ("", "images.0"),
    ],
)
def test_bad_vision_images_are_400_naming_the_image(server: Any, image: str, param: str) -> None:
    with server.client() as c:
        r = c.post(
            "/api/v1/vision/generate",
            json={"model": "tiny-qwen-vl", "images": [image], "prompt": "x"},
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_unknown_route_and_method_use_the_error_body(server: Any) -> None:
    with server.client() as c:
        r = c.get("/api/v1/nope")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        r = c.get("/api/v1/sample")
        assert r.status_code == 405 and "error" in r.json()


EXAMPLES_PER_MODE = 5


@pytest.mark.slow
def test_no_generated_input_finds_a_server_error(server: Any) -> None:
    """Every operation of /openapi.json, valid and invalid inputs: no response is a 5xx."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=server.base_url, timeout=60)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                        f"{response.status_code}: {response.text[:300]}"
                    )

            try:
                run()
            except Unsatisfiable:
                continue  # no invalid input exists (an operation without parameters)
    assert calls > 50
    assert not failures, "\n".join(failures[:10])
    with server.client() as c:
        assert c.get("/api/v1/healthz").status_code == 200
