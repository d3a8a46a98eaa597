"""Exactly-once POSTs (store bounds, replay over HTTP) and dropping work of departed clients."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

from workbench_serving.idempotency import IdempotencyStore, StoredOutcome


def test_store_is_bounded_lru_and_never_evicts_in_flight_entries() -> None:
    store = IdempotencyStore(max_entries=2, ttl_s=60)
    running = store.begin(("p", "running"), "fp0")
    for i in range(3):
        e = store.begin(("p", f"k{i}"), f"fp{i}")
        store.finish(("p", f"k{i}"), e, StoredOutcome(200, [], b"{}"))
    assert store.get(("p", "running")) is running
    assert store.get(("p", "k0")) is None  # oldest finished entry went first
    assert len(store) <= 3


def test_store_forgets_outcomes_after_their_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    store = IdempotencyStore(max_entries=10, ttl_s=5)
    e = store.begin(("p", "k"), "fp")
    store.finish(("p", "k"), e, StoredOutcome(200, [], b"{}"))
    assert store.get(("p", "k")) is not None
    later = time.monotonic() + 10
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert store.get(("p", "k")) is None


def test_unstorable_outcome_releases_the_key_for_a_retry() -> None:
    store = IdempotencyStore()
    e = store.begin(("p", "k"), "fp")
    store.finish(("p", "k"), e, None)  # a 5xx / 429: nothing happened
    assert store.get(("p", "k")) is None
    assert e.done.is_set()


def test_repeated_key_on_sample_replays_without_running_again(server: Any) -> None:
    sched = server.state.models["tiny-llama"].scheduler
    body = {"model": "tiny-llama", "prompt": "replay me", "sampling_params": {"max_tokens": 4}}
    headers = {"Idempotency-Key": "sample-replay-1"}
    with server.client() as c:
        first = c.post("/api/v1/sample", json=body, headers=headers)
        items_after_first = sched.stats.items
        second = c.post("/api/v1/sample", json=body, headers=headers)
        other_caller = c.post(
            "/api/v1/sample", json={**body, "prompt": "different"}, headers=headers
        )
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert sched.stats.items == items_after_first
    assert other_caller.status_code == 409


def test_4xx_outcome_is_stored_too(server: Any) -> None:
    headers = {"Idempotency-Key": "bad-request-once"}
    with server.client() as c:
        a = c.post("/api/v1/sample", json={"model": "nope", "prompt": "x"}, headers=headers)
        b = c.post("/api/v1/sample", json={"model": "nope", "prompt": "x"}, headers=headers)
    assert a.status_code == b.status_code == 404
    assert b.headers["idempotent-replayed"] == "true"


@pytest.fixture(scope="module")
def serial_server(server_factory: Any) -> Any:
    from workbench_serving.settings import BatchingSettings, ServingSettings

    settings = ServingSettings(
        models=["tiny-llama"],
        training_models=[],
        device="cpu",
        batching=BatchingSettings(max_batch_size=1, max_wait_ms=0, max_queue_size=64),
    )
    running = server_factory(settings)
    yield running
    running.stop()


def _waiting(sched: Any) -> list[Any]:
    return list(sched._pending) + list(sched.inflight_entries())


def _wait_for(cond: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_request_of_a_disconnected_client_is_dropped_before_it_runs(serial_server: Any) -> None:
    sched = serial_server.state.models["tiny-llama"].scheduler
    gate = threading.Event()
    # Hold the device thread (as a long batch would) so the victim must wait for it.
    held = sched.worker._pool.submit(gate.wait, 60)
    before_dropped = sched.stats.dropped_cancelled
    before_items = sched.stats.items
    body = json.dumps(
        {"model": "tiny-llama", "prompt": "victim", "sampling_params": {"max_tokens": 3}}
    ).encode()
    host, port = serial_server.base_url.removeprefix("http://").split(":")
    try:
        sock = socket.create_connection((host, int(port)))
        sock.sendall(
            b"POST /api/v1/sample HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert _wait_for(lambda: bool(_waiting(sched))), "the request never reached the scheduler"
        sock.close()  # the client goes away while its request waits
        assert _wait_for(lambda: all(e.token.cancelled for e in _waiting(sched)))
    finally:
        gate.set()
        held.result(timeout=60)
    assert _wait_for(lambda: sched.stats.dropped_cancelled == before_dropped + 1)
    assert sched.stats.items == before_items  # the victim never ran
    with serial_server.client() as c:
        assert (
            c.post("/api/v1/sample", json={"model": "tiny-llama", "prompt": "next"}).status_code
            == 200
        )


def test_streaming_request_is_dropped_when_its_client_disconnects(serial_server: Any) -> None:
    sched = serial_server.state.models["tiny-llama"].scheduler
    gate = threading.Event()
    held = sched.worker._pool.submit(gate.wait, 60)
    before_dropped = sched.stats.dropped_cancelled
    before_items = sched.stats.items
    body = json.dumps(
        {
            "model": "tiny-llama",
            "prompt": "stream victim",
            "stream": True,
            "sampling_params": {"max_tokens": 50},
        }
    ).encode()
    host, port = serial_server.base_url.removeprefix("http://").split(":")
    try:
        sock = socket.create_connection((host, int(port)))
        sock.sendall(
            b"POST /api/v1/sample HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert _wait_for(lambda: bool(_waiting(sched)))
        sock.close()
        assert _wait_for(lambda: all(e.token.cancelled for e in _waiting(sched)))
    finally:
        gate.set()
        held.result(timeout=60)
    assert _wait_for(lambda: sched.stats.dropped_cancelled == before_dropped + 1)
    assert sched.stats.items == before_items
