"""The agent inside ``workbench dev``: tools that reach serving and the tracker, SSE, cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from wb_integration import DevServer

from workbench_core.sse import SSEDecoder

pytestmark = pytest.mark.slow


@pytest.fixture
def agent(devserver: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{devserver.base_url}/agent", timeout=120) as client:
        yield client


def _events_until_done(agent: httpx.Client, sid: str, timeout: float = 180) -> list[Any]:
    """Read the session's SSE stream until the run ends; returns (event, data) pairs."""
    decoder = SSEDecoder()
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    with agent.stream("GET", f"/sessions/{sid}/events", timeout=timeout) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for chunk in stream.iter_bytes():
            for ev in decoder.feed(chunk):
                seen.append((ev.event, json.loads(ev.data) if ev.data else {}, ev.id))
                if ev.event == "run_done":
                    return seen
            assert time.monotonic() < deadline, seen
    return seen


def test_agent_tools_reach_serving_and_the_tracker_over_http(
    devserver: DevServer, agent: httpx.Client
) -> None:
    sid = agent.post("/sessions", json={}).json()["id"]
    sample = agent.post(
        f"/sessions/{sid}/tools/sample_text",
        json={"args": {"prompt": "Hello", "max_tokens": 4, "temperature": 0}},
    )
    assert sample.status_code == 200, sample.text
    assert sample.json()["ok"] is True, sample.json()
    search = agent.post(f"/sessions/{sid}/tools/search_runs", json={"args": {}})
    assert search.status_code == 200, search.text
    assert search.json()["ok"] is True, search.json()
    bad = agent.post(f"/sessions/{sid}/tools/sample_text", json={"args": {"prompt": 3}})
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "args"


def test_cancel_stops_a_run_mid_way_and_sse_reports_it(
    devserver: DevServer, agent: httpx.Client
) -> None:
    with httpx.Client(base_url=devserver.base_url, timeout=30) as http:
        before = http.get("/devserver/agent/llm").json()
        # the untrained base model never writes a valid action, so the run would use every step
        assert http.post("/devserver/agent/llm", json={"model": "tiny-llama"}).status_code == 200
    try:
        sid = agent.post("/sessions", json={}).json()["id"]
        run = agent.post(f"/sessions/{sid}/runs", json={"prompt": "Say hi", "max_steps": 50})
        assert run.status_code == 202, run.text
        run_id = run.json()["id"]
        decoder = SSEDecoder()
        events: list[tuple[str, dict[str, Any]]] = []
        with agent.stream("GET", f"/sessions/{sid}/events") as stream:
            for chunk in stream.iter_bytes():
                for ev in decoder.feed(chunk):
                    data = json.loads(ev.data) if ev.data else {}
                    events.append((ev.event, data))
                    if ev.event == "step_start" and data.get("step") == 2:
                        cancel = agent.post(f"/sessions/{sid}/cancel", json={"reason": "test"})
                        assert cancel.json()["cancelled"] is True
                if events and events[-1][0] == "run_done":
                    break
        done = events[-1][1]
        assert done["status"] == "cancelled"
        assert done["steps"] < 50
        # run_done is published from inside the run's task, just before that task ends
        deadline = time.monotonic() + 30
        while (status := agent.get(f"/sessions/{sid}/runs/{run_id}").json())["status"] in (
            "running",
            "cancelling",
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert status["status"] == "cancelled"
    finally:
        with httpx.Client(base_url=devserver.base_url, timeout=30) as http:
            http.post("/devserver/agent/llm", json={"model": before["model"]})
            assert http.get("/devserver/agent/llm").json() == before


def test_sse_replays_what_a_reconnecting_client_missed(agent: httpx.Client) -> None:
    sid = agent.post("/sessions", json={}).json()["id"]
    assert agent.post(f"/sessions/{sid}/tools/search_runs", json={"args": {}}).status_code == 200

    def first_events(headers: dict[str, str], n: int) -> list[tuple[str, str | None]]:
        decoder = SSEDecoder()
        got: list[tuple[str, str | None]] = []
        with agent.stream("GET", f"/sessions/{sid}/events", headers=headers, timeout=30) as s:
            for chunk in s.iter_bytes():
                got.extend((ev.event, ev.id) for ev in decoder.feed(chunk))
                if len(got) >= n:
                    return got[:n]
        return got

    everything = first_events({}, 2)
    assert [e for e, _ in everything] == ["tool_start", "tool_end"]
    resumed = first_events({"Last-Event-ID": str(everything[0][1])}, 1)
    assert resumed == [everything[1]]
    bad = agent.get(f"/sessions/{sid}/events", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "Last-Event-ID"
