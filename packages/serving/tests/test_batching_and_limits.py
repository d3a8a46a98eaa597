"""Dynamic batching, backpressure and deadlines seen from HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest


async def _concurrent_samples(base_url: str, n: int, max_tokens: int = 4) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as c:
        return await asyncio.gather(
            *(
                c.post(
                    "/api/v1/sample",
                    json={
                        "model": "tiny-llama",
                        "prompt": f"prompt number {i}",
                        "sampling_params": {"max_tokens": max_tokens, "seed": i},
                    },
                )
                for i in range(n)
            )
        )


def test_concurrent_requests_run_in_fewer_batches_than_requests(server: Any) -> None:
    before_batches = server.metric("workbench_batches_total", model="tiny-llama")
    before_items = server.metric("workbench_batch_size_sum", model="tiny-llama")
    responses = asyncio.run(_concurrent_samples(server.base_url, 12))
    assert all(r.status_code == 200 for r in responses)
    batches = server.metric("workbench_batches_total", model="tiny-llama") - before_batches
    items = server.metric("workbench_batch_size_sum", model="tiny-llama") - before_items
    assert items == 12
    assert batches < 12


def test_metrics_export_queue_depth_latency_tokens_and_errors(server: Any) -> None:
    with server.client() as c:
        c.post("/api/v1/sample", json={"model": "nope", "prompt": "x"})
        c.post(
            "/api/v1/sample",
            json={"model": "tiny-llama", "prompt": "x", "sampling_params": {"max_tokens": 2}},
        )
        text = c.get("/metrics").text
    for name in (
        "workbench_queue_depth",
        "workbench_batch_size_bucket",
        "workbench_request_latency_seconds_bucket",
        "workbench_tokens_total",
        "workbench_errors_total",
    ):
        assert name in text
    assert server.metric("workbench_errors_total", type="not_found_error") >= 1
    assert server.metric("workbench_tokens_total", model="tiny-llama", kind="completion") >= 2


def test_request_past_its_deadline_gets_504(server: Any) -> None:
    # The batch window (max_wait_ms=20) alone outlasts a 1 ms deadline.
    with server.client() as c:
        r = c.post(
            "/api/v1/sample",
            headers={"X-Request-Timeout": "0.001"},
            json={"model": "tiny-llama", "prompt": "slow", "sampling_params": {"max_tokens": 8}},
        )
        assert r.status_code == 504
        assert r.json()["error"]["type"] == "timeout_error"
        assert c.get("/api/v1/healthz").status_code == 200


@pytest.fixture(scope="module")
def tiny_queue_server(server_factory: Any) -> Iterator[Any]:
    from workbench_serving.settings import BatchingSettings, ServingSettings

    settings = ServingSettings(
        models=["tiny-llama"],
        training_models=[],
        device="cpu",
        batching=BatchingSettings(max_batch_size=1, max_wait_ms=0, max_queue_size=1),
    )
    running = server_factory(settings)
    yield running
    running.stop()


def test_overload_answers_429_with_retry_after(tiny_queue_server: Any) -> None:
    responses = asyncio.run(_concurrent_samples(tiny_queue_server.base_url, 16, max_tokens=16))
    codes = [r.status_code for r in responses]
    assert 429 in codes and 200 in codes
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"
    # Still serving afterwards.
    with tiny_queue_server.client() as c:
        ok = c.post("/api/v1/sample", json={"model": "tiny-llama", "prompt": "again"})
        assert ok.status_code == 200
