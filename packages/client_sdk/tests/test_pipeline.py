"""The one request pipeline against a real uvicorn serving a tiny stub of the wire format."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from _stub_app import StubState
from conftest import FAST

import workbench_client as wc
from workbench_client import AsyncWorkbench
from workbench_core.protocol import Capabilities, OptimStepResponse
from workbench_core.retry import RetryPolicy

STATUS_TO_CLASS = {
    400: wc.BadRequestError,
    401: wc.AuthenticationError,
    403: wc.PermissionDeniedError,
    404: wc.NotFoundError,
    409: wc.ConflictError,
    422: wc.UnprocessableEntityError,
    429: wc.RateLimitError,
    500: wc.InternalServerError,
    503: wc.InternalServerError,
}


@pytest.mark.parametrize("status", sorted(STATUS_TO_CLASS))
async def test_each_status_maps_to_its_error_class_with_the_servers_message(
    stub_url: str, status: int
) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST.with_(max_attempts=1)) as wb:
        with pytest.raises(STATUS_TO_CLASS[status]) as info:
            await wb.request("GET", f"status/{status}", cast_to=None)
    err = info.value
    assert type(err) is STATUS_TO_CLASS[status]
    assert err.status_code == status
    assert err.message.startswith(f"server says {status}")
    assert err.request_id == f"req-{status}"
    assert err.param == "field_x"
    assert isinstance(err, wc.APIStatusError) and isinstance(err, wc.WorkbenchError)


async def test_retries_reuse_one_idempotency_key_until_success(
    stub_url: str, stub_state: StubState
) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        out = await wb._post("flaky?fail=2", body={}, cast_to=OptimStepResponse)
    assert out.step == 3
    keys = {s["idempotency_key"] for s in stub_state.seen}
    assert len(keys) == 1 and next(iter(keys)).startswith("wb-")
    assert [s["retry_count"] for s in stub_state.seen] == [None, "1", "2"]


async def test_each_mutating_call_gets_its_own_idempotency_key(
    stub_url: str, stub_state: StubState
) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        await wb._post("flaky?fail=0", body={}, cast_to=OptimStepResponse)
        await wb._post("flaky?fail=0", body={}, cast_to=OptimStepResponse)
        await wb._get("capabilities", cast_to=Capabilities)
    keys = [s["idempotency_key"] for s in stub_state.seen]
    assert keys[0] != keys[1] and keys[2] is None


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503])
async def test_retryable_statuses_are_retried(stub_url: str, code: int) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        out = await wb._post(f"flaky?fail=1&code={code}", body={}, cast_to=OptimStepResponse)
    assert out.step == 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(
    stub_url: str, stub_state: StubState, code: int
) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        with pytest.raises(wc.APIStatusError):
            await wb._post(f"flaky?fail=5&code={code}", body={}, cast_to=OptimStepResponse)
    assert len(stub_state.seen) == 1


async def test_retry_after_sets_the_delay(stub_url: str) -> None:
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST, sleep=sleep) as wb:
        await wb._post("flaky?fail=2&code=429&retry_after=3", body={}, cast_to=OptimStepResponse)
    assert slept == [3.0, 3.0]


async def test_retries_give_up_after_the_policy_and_raise_the_last_error(
    stub_url: str, stub_state: StubState
) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST.with_(max_attempts=3)) as wb:
        with pytest.raises(wc.InternalServerError, match="try again"):
            await wb._post("flaky?fail=10", body={}, cast_to=OptimStepResponse)
    assert len(stub_state.seen) == 3


async def test_connection_refused_raises_api_connection_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    async with AsyncWorkbench(base_url=f"http://127.0.0.1:{port}", retry_policy=FAST) as wb:
        with pytest.raises(wc.APIConnectionError) as info:
            await wb.service.capabilities()
    assert not isinstance(info.value, wc.APITimeoutError)


async def test_a_slow_answer_raises_api_timeout_error(stub_url: str) -> None:
    policy = FAST.with_(max_attempts=2)
    async with AsyncWorkbench(base_url=stub_url, retry_policy=policy, timeout=0.2) as wb:
        with pytest.raises(wc.APITimeoutError):
            await wb.request("GET", "slow?s=2", cast_to=None)


async def test_401_without_a_key_says_to_set_workbench_api_key(
    stub_url: str, stub_state: StubState
) -> None:
    stub_state.required_key = "sekret"
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        with pytest.raises(wc.AuthenticationError, match="WORKBENCH_API_KEY"):
            await wb.service.capabilities()


async def test_api_key_and_base_url_come_from_the_environment(
    stub_url: str, stub_state: StubState, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_state.required_key = "sekret"
    monkeypatch.setenv("WORKBENCH_API_KEY", "sekret")
    monkeypatch.setenv("WORKBENCH_BASE_URL", stub_url)
    async with AsyncWorkbench(retry_policy=FAST) as wb:
        caps = await wb.service.capabilities()
    assert caps.models[0].name == "stub-llm"
    assert stub_state.seen[-1]["api_key"] == "sekret"


async def test_a_body_that_does_not_match_the_type_raises_validation_error(stub_url: str) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        with pytest.raises(wc.APIResponseValidationError, match="OptimStepResponse"):
            await wb._get("bad_body", cast_to=OptimStepResponse)


async def test_stream_yields_token_events_then_the_final_response(stub_url: str) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        stream = await wb.sampling.stream("stub-llm", "hi")
        texts = [ev.text async for ev in stream]
    assert texts == ["a", "b", "c"]
    assert stream.final is not None and stream.final.sequences[0].text == "abc"


async def test_an_error_event_mid_stream_raises_its_typed_error(stub_url: str) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        stream = await wb.sampling.stream("stream-error", "hi")
        with pytest.raises(wc.NotFoundError, match="gone mid-stream"):
            async for _ in stream:
                pass


async def test_connection_limit_bounds_open_connections(stub_url: str) -> None:
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST, max_connections=2) as wb:
        results = await asyncio.gather(
            *[wb.request("GET", "slow?s=0.05", cast_to=None) for _ in range(8)]
        )
        pool = wb._client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) <= 2
    assert all(r == {"step": 1} for r in results)


async def test_a_caller_supplied_http_client_is_used_and_left_open(stub_url: str) -> None:
    async with httpx.AsyncClient() as http:
        wb = AsyncWorkbench(base_url=stub_url, http_client=http, retry_policy=FAST)
        await wb.service.capabilities()
        await wb.close()
        assert not http.is_closed


def test_negative_max_retries_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        AsyncWorkbench(max_retries=-1)


def test_default_policy_follows_max_retries() -> None:
    wb = AsyncWorkbench(max_retries=2)
    assert wb.retry_policy == RetryPolicy(max_attempts=3)


async def test_each_retry_is_logged_with_the_error_and_delay(
    stub_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="workbench_client")
    async with AsyncWorkbench(base_url=stub_url, retry_policy=FAST) as wb:
        await wb._post("flaky?fail=1&code=503", body={}, cast_to=OptimStepResponse)
    msgs = [r.getMessage() for r in caplog.records if r.name == "workbench_client"]
    assert len(msgs) == 1
    assert "POST" in msgs[0] and "attempt 1" in msgs[0] and "503" in msgs[0]
