"""The futures store behind ``?wait=false``: outcomes, errors, long-poll, bounds."""

from __future__ import annotations

import asyncio

import pytest

from workbench_core.protocol import ErrorDetail, SampleResponse
from workbench_serving.futures import FutureStore, FutureStoreFull


def _to_error(exc: BaseException) -> tuple[int, ErrorDetail]:
    return 400, ErrorDetail(type="invalid_request_error", message=str(exc), param="x")


async def test_done_future_returns_the_serialised_result() -> None:
    store = FutureStore()

    async def work() -> SampleResponse:
        return SampleResponse(sequences=[], prompt_tokens=3)

    rid = store.spawn(work(), _to_error)
    result = await store.retrieve(rid, timeout=5)
    assert result is not None and result.status == "done"
    assert result.result == {"model": None, "sequences": [], "prompt_tokens": 3}


async def test_failed_future_carries_status_and_error() -> None:
    store = FutureStore()

    async def work() -> SampleResponse:
        raise ValueError("bad x")

    rid = store.spawn(work(), _to_error)
    result = await store.retrieve(rid, timeout=5)
    assert result is not None and result.status == "error"
    assert result.http_status == 400 and result.error is not None
    assert result.error.param == "x"


async def test_long_poll_answers_pending_when_the_timeout_passes_first() -> None:
    store = FutureStore()
    release = asyncio.Event()

    async def work() -> SampleResponse:
        await release.wait()
        return SampleResponse(sequences=[], prompt_tokens=0)

    rid = store.spawn(work(), _to_error)
    pending = await store.retrieve(rid, timeout=0.01)
    assert pending is not None and pending.status == "pending"
    release.set()
    done = await store.retrieve(rid, timeout=5)
    assert done is not None and done.status == "done"
    assert await store.retrieve("fut_unknown", timeout=0) is None


async def test_store_refuses_new_work_when_full_of_pending_and_evicts_finished() -> None:
    store = FutureStore(max_entries=2)
    release = asyncio.Event()

    async def slow() -> SampleResponse:
        await release.wait()
        return SampleResponse(sequences=[], prompt_tokens=0)

    first = store.spawn(slow(), _to_error)
    store.spawn(slow(), _to_error)
    with pytest.raises(FutureStoreFull):
        store.spawn(slow(), _to_error)
    release.set()
    await store.retrieve(first, timeout=5)
    await asyncio.sleep(0)
    last = store.spawn(slow(), _to_error)  # room again: a finished outcome was evicted
    result = await store.retrieve(last, timeout=5)
    assert result is not None and result.status == "done"
