"""RetryHandler: connection limit, progress timeout, whole-call retry classification."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import workbench_client as wc
from workbench_client import AsyncWorkbench, RetryConfig, RetryHandler
from workbench_core.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01, jitter=0.0)


async def test_connection_limit_bounds_calls_in_flight(stub_url: str) -> None:
    handler = RetryHandler(RetryConfig(max_connections=3, policy=FAST))
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        results = await asyncio.gather(
            *[handler.execute(lambda: wb.request("GET", "slow?s=0.05")) for _ in range(12)]
        )
    assert len(results) == 12
    assert handler.peak_in_flight == 3


async def test_no_progress_raises_progress_timeout_instead_of_hanging(stub_url: str) -> None:
    handler = RetryHandler(RetryConfig(progress_timeout=0.3, policy=FAST))
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST, timeout=30) as wb:
        with pytest.raises(wc.ProgressTimeoutError, match="progress"):
            await handler.execute(lambda: wb.request("GET", "slow?s=10"))


async def test_progress_of_other_calls_keeps_a_long_call_alive() -> None:
    handler = RetryHandler(RetryConfig(progress_timeout=0.4, policy=FAST))

    async def long() -> str:
        await asyncio.sleep(1.0)
        return "long"

    async def short() -> str:
        await asyncio.sleep(0.1)
        return "short"

    async def trickle() -> list[str]:
        out = []
        for _ in range(10):
            out.append(await handler.execute(short))
        return out

    long_result, shorts = await asyncio.gather(handler.execute(long), trickle())
    assert long_result == "long" and len(shorts) == 10


async def test_retryable_errors_are_retried_as_whole_calls() -> None:
    handler = RetryHandler(RetryConfig(policy=FAST))
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise wc.APIConnectionError()
        return calls

    assert await handler.execute(flaky) == 3


async def test_client_errors_are_not_retried_as_whole_calls() -> None:
    handler = RetryHandler(RetryConfig(policy=FAST))
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise wc.BadRequestError("nope", status_code=400)

    with pytest.raises(wc.BadRequestError):
        await handler.execute(bad)
    assert calls == 1


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        RetryConfig(max_connections=0)
    with pytest.raises(ValueError, match="progress_timeout"):
        RetryConfig(progress_timeout=0)


def test_whole_call_retries_of_a_high_level_call_reuse_its_idempotency_key(
    stub_url: str, stub_state: Any
) -> None:
    from workbench_client import ServiceClient

    # The HTTP layer gives up at once, so the RetryHandler's whole-call retry does the work.
    service = ServiceClient(
        base_url=stub_url,
        retry_policy=FAST.with_(max_attempts=1),
        retry_config=RetryConfig(policy=FAST),
    )
    sampler = service.create_sampling_client(base_model="flaky-model")
    out = sampler.sample("hi", 1).result(timeout=30)
    assert out.sequences[0].text == "abc"
    keys = [s["idempotency_key"] for s in stub_state.seen if s["path"].endswith("/sample")]
    assert len(keys) == 2 and keys[0] == keys[1]
    service.close()


def test_a_whole_call_retry_keeps_its_place_in_the_runs_order(
    stub_url: str, stub_state: Any
) -> None:
    from workbench_client import ServiceClient, TrainingClient
    from workbench_core.protocol import TrainingRun

    service = ServiceClient(
        base_url=stub_url,
        retry_policy=FAST.with_(max_attempts=1),
        retry_config=RetryConfig(policy=FAST),
    )
    run = TrainingRun(id="run-1", base_model="stub-llm", rank=1)
    training = TrainingClient(service._holder, run, log_to_tracker=False)
    first = training.optim_step({"learning_rate": 0.1})
    second = training.optim_step({"learning_rate": 0.1})
    # Each call's first attempt fails; its whole-call retry must still run before the next call.
    assert first.result(timeout=20).step == 1
    assert second.result(timeout=20).step == 2
    keys = [s["idempotency_key"] for s in stub_state.seen if "optim_step" in s["path"]]
    assert keys[0] == keys[1] != keys[2] == keys[3]
    service.close()
