"""The agent's HTTP API on a real uvicorn: sessions, runs, SSE with Last-Event-ID replay, cancel,
tools, UTF-8 round trips and 4xx errors that name the field."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from workbench_agent import (
    AgentRuntime,
    AgentSettings,
    LLMResponse,
    Message,
    ScriptedLLM,
    ToolCall,
    ToolRegistry,
    create_app,
    tool,
)
from workbench_core.sse import ServerSentEvent, SSEDecoder

from ._servers import serve

release = threading.Event()


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(timeout=None)
async def wait_for_release() -> str:
    """Blocks until the test releases it (or the run is cancelled)."""
    while not release.is_set():
        await asyncio.sleep(0.01)
    return "released"


def echo_prompt(messages: list[Message]) -> str:
    user = [m for m in messages if m.role == "user"][-1]
    return "你说：" + user.content


def make_runtime(script: list[Any]) -> AgentRuntime:
    return AgentRuntime(
        ScriptedLLM(script),
        ToolRegistry([add, wait_for_release]),
        settings=AgentSettings(heartbeat=0.2, max_steps_limit=10, max_prompt_chars=100),
    )


@pytest.fixture
def server() -> Iterator[tuple[str, AgentRuntime]]:
    rt = make_runtime([])
    with serve(create_app(rt)) as url:
        yield url, rt


def script(rt: AgentRuntime, *steps: Any) -> None:
    assert isinstance(rt.llm, ScriptedLLM)
    rt.llm._script.extend(steps)


async def read_events(
    client: httpx.AsyncClient,
    path: str,
    *,
    until: str = "run_done",
    headers: dict[str, str] | None = None,
    limit: int | None = None,
    raw: list[bytes] | None = None,
) -> list[ServerSentEvent]:
    """Read SSE events until an event of type ``until`` (or ``limit`` events), then disconnect."""
    decoder = SSEDecoder()
    out: list[ServerSentEvent] = []
    async with client.stream("GET", path, headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for chunk in resp.aiter_bytes():
            if raw is not None:
                raw.append(chunk)
            for ev in decoder.feed(chunk):
                if ev.event in ("message", "") and not ev.data:
                    continue
                out.append(ev)
                if ev.event == until or (limit is not None and len(out) >= limit):
                    return out
    return out


@pytest.fixture
async def client(server: tuple[str, AgentRuntime]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server[0], timeout=10) as c:
        yield c


async def test_run_streams_events_and_a_chinese_prompt_round_trips_byte_for_byte(
    server: tuple[str, AgentRuntime], client: httpx.AsyncClient
) -> None:
    _, rt = server
    script(rt, LLMResponse(tool_calls=[ToolCall(name="add", args={"a": 1, "b": 2})]), echo_prompt)
    prompt = "请把一加二，然后告诉我结果 🌏"
    sid = (await client.post("/sessions", json={})).json()["id"]
    body = json.dumps({"prompt": prompt}, ensure_ascii=False).encode("utf-8")
    resp = await client.post(
        f"/sessions/{sid}/runs", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 202, resp.text
    run = resp.json()
    assert run["prompt"] == prompt and run["status"] in ("running", "done")

    raw: list[bytes] = []
    events = await read_events(client, f"/sessions/{sid}/events", raw=raw)
    types = [e.event for e in events]
    assert types[0] == "run_start" and types[-1] == "run_done"
    assert ["tool_start", "tool_end", "observation"] == [
        t for t in types if t in ("tool_start", "tool_end", "observation")
    ]
    final = next(e for e in events if e.event == "final").json()
    assert final["text"] == "你说：" + prompt
    assert ("你说：" + prompt).encode("utf-8") in b"".join(raw)  # raw UTF-8 on the wire
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    assert all(e.json()["run_id"] == run["id"] for e in events)

    session = (await client.get(f"/sessions/{sid}")).json()
    assert session["history"][0] == {"role": "user", "content": prompt}
    assert session["runs"][0]["result"]["status"] == "done"
    status = (await client.get(f"/sessions/{sid}/runs/{run['id']}")).json()
    assert status["result"]["final"] == "你说：" + prompt


async def test_reconnect_with_last_event_id_replays_exactly_the_missed_events(
    server: tuple[str, AgentRuntime], client: httpx.AsyncClient
) -> None:
    _, rt = server
    script(rt, LLMResponse(tool_calls=[ToolCall(name="add", args={"a": 1, "b": 2})]), "three")
    sid = (await client.post("/sessions")).json()["id"]
    await client.post(f"/sessions/{sid}/runs", json={"prompt": "1+2"})
    everything = await read_events(client, f"/sessions/{sid}/events")
    first = await read_events(client, f"/sessions/{sid}/events", limit=4)
    assert [e.id for e in first] == ["1", "2", "3", "4"]
    rest = await read_events(client, f"/sessions/{sid}/events", headers={"Last-Event-ID": "4"})
    assert [e.id for e in first + rest] == [e.id for e in everything]
    assert [e.event for e in first + rest] == [e.event for e in everything]


async def test_live_subscriber_receives_events_of_a_later_run_and_heartbeats(
    server: tuple[str, AgentRuntime], client: httpx.AsyncClient
) -> None:
    _, rt = server
    script(rt, "hello")
    sid = (await client.post("/sessions")).json()["id"]
    raw: list[bytes] = []
    reader = asyncio.create_task(read_events(client, f"/sessions/{sid}/events", raw=raw))
    # While idle, heartbeats (every 0.2 s) keep the stream alive before any event exists.
    for _ in range(500):
        if b": ping" in b"".join(raw):
            break
        await asyncio.sleep(0.02)
    assert b": ping" in b"".join(raw)
    await client.post(f"/sessions/{sid}/runs", json={"prompt": "hi"})
    events = await asyncio.wait_for(reader, 10)
    assert [e.event for e in events][-1] == "run_done"


async def test_cancel_stops_a_pending_tool_and_emits_cancelled(
    server: tuple[str, AgentRuntime], client: httpx.AsyncClient
) -> None:
    _, rt = server
    release.clear()
    script(rt, LLMResponse(tool_calls=[ToolCall(name="wait_for_release")]), "unreachable")
    sid = (await client.post("/sessions")).json()["id"]
    await client.post(f"/sessions/{sid}/runs", json={"prompt": "wait"})
    started = await read_events(client, f"/sessions/{sid}/events", until="tool_start")
    assert started[-1].event == "tool_start"
    conflict = await client.post(f"/sessions/{sid}/runs", json={"prompt": "again"})
    assert conflict.status_code == 409 and conflict.json()["error"]["param"] == "session_id"
    resp = await client.post(f"/sessions/{sid}/cancel", json={"reason": "停止"})
    assert resp.status_code == 200 and resp.json()["cancelled"] is True
    events = await read_events(
        client, f"/sessions/{sid}/events", headers={"Last-Event-ID": started[-1].id or "0"}
    )
    assert [e.event for e in events] == ["tool_cancelled", "cancelled", "run_done"]
    assert events[1].json()["reason"] == "停止"
    assert events[2].json()["status"] == "cancelled"
    release.set()
    again = await client.post(f"/sessions/{sid}/cancel")
    assert again.json() == {"cancelled": False, "run": None}


async def test_tools_are_listed_and_callable_directly(
    server: tuple[str, AgentRuntime], client: httpx.AsyncClient
) -> None:
    tools = (await client.get("/tools")).json()["tools"]
    names = [t["name"] for t in tools]
    assert names == ["add", "wait_for_release"]
    assert tools[0]["parameters"]["required"] == ["a", "b"]
    sid = (await client.post("/sessions")).json()["id"]
    resp = await client.post(f"/sessions/{sid}/tools/add", json={"args": {"a": 20, "b": 22}})
    assert resp.status_code == 200 and resp.json()["output"] == 42 and resp.json()["ok"]
    events = await read_events(client, f"/sessions/{sid}/events", until="tool_end")
    assert [e.event for e in events] == ["tool_start", "tool_end"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [
        ("post", "/sessions/{sid}/runs", {}, 422, "prompt"),
        ("post", "/sessions/{sid}/runs", {"prompt": ""}, 422, "prompt"),
        ("post", "/sessions/{sid}/runs", {"prompt": "x", "max_steps": 0}, 422, "max_steps"),
        ("post", "/sessions/{sid}/runs", {"prompt": "x", "max_steps": 11}, 422, "max_steps"),
        ("post", "/sessions/{sid}/runs", {"prompt": 5}, 422, "prompt"),
        ("post", "/sessions/{sid}/runs", {"prompt": "长" * 101}, 422, "prompt"),
        ("get", "/sessions/{sid}/events?since=-1", None, 422, "since"),
        ("post", "/sessions/nope/runs", {"prompt": "x"}, 404, "session_id"),
        ("get", "/sessions/nope/events", None, 404, "session_id"),
        ("post", "/sessions/{sid}/tools/nope", {"args": {}}, 404, "name"),
        ("post", "/sessions/{sid}/tools/add", {"args": {"a": 1}}, 422, "args"),
        ("post", "/sessions/{sid}/tools/add", {"args": [1]}, 422, "args"),
        ("post", "/sessions/{sid}/cancel", {"reason": ""}, 422, "reason"),
        ("post", "/sessions", {"system": 3}, 422, "system"),
        ("get", "/sessions/{sid}/runs/nope", None, 404, "run_id"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    client: httpx.AsyncClient, method: str, path: str, body: Any, status: int, param: str
) -> None:
    sid = (await client.post("/sessions")).json()["id"]
    resp = await client.request(method, path.format(sid=sid), json=body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["param"] == param and err["message"] and err["request_id"]


async def test_malformed_json_body_and_bad_last_event_id_are_400s(
    client: httpx.AsyncClient,
) -> None:
    sid = (await client.post("/sessions")).json()["id"]
    resp = await client.post(
        f"/sessions/{sid}/runs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422 and resp.json()["error"]["type"] == "invalid_request"
    resp = await client.get(f"/sessions/{sid}/events", headers={"Last-Event-ID": "abc"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "Last-Event-ID"


async def test_chat_page_uses_relative_urls_and_works_when_mounted_under_a_prefix() -> None:
    rt = make_runtime(["mounted hello"])
    parent = FastAPI()
    parent.mount("/agent", create_app(rt))
    with serve(parent) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            page = await c.get("/agent/")
            assert page.status_code == 200 and "EventSource" in page.text
            assert 'fetch("/' not in page.text and 'EventSource("/' not in page.text
            sid = (await c.post("/agent/sessions")).json()["id"]
            await c.post(f"/agent/sessions/{sid}/runs", json={"prompt": "hi"})
            events = await read_events(c, f"/agent/sessions/{sid}/events")
            assert next(e for e in events if e.event == "final").json()["text"] == "mounted hello"
            assert (await c.get("/agent/healthz")).json() == {"status": "ok"}
