"""Events per second from the agent's EventBus through SSE to one HTTP client.

Measured: N events published to a session's topic travel EventBus -> core ``sse_stream`` ->
the agent app's ``GET /sessions/{id}/events`` (real uvicorn on loopback) -> httpx streaming ->
core ``SSEDecoder`` in a client thread. Anchor: the same N events read in-process from an
EventBus ``Subscription`` (no encoding, no HTTP). The ratio says what the wire costs; a chat UI
needs a few hundred events per second (one per streamed token). Prints both rates and the
ratio; exits 0.

Run: ``python benchmarks/agent_sse.py`` (also run by ``nox -s bench``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import uvicorn

from workbench_agent import AgentRuntime, ScriptedLLM, ToolRegistry, create_app
from workbench_core.events import EventBus
from workbench_core.sse import SSEDecoder

EVENTS = 20_000
PAYLOAD = {"text": "tok", "run_id": "run_bench"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def in_process(n: int) -> float:
    bus = EventBus(buffer_size=n + 16, history_size=16)
    sub = bus.subscribe("t")
    t0 = time.perf_counter()
    for _ in range(n):
        bus.publish("t", "llm_delta", PAYLOAD)
    got = 0
    async for _ev in sub:
        got += 1
        if got == n:
            break
    return n / (time.perf_counter() - t0)


def over_sse(n: int) -> float:
    bus = EventBus(buffer_size=n + 16, history_size=n + 16)
    runtime = AgentRuntime(ScriptedLLM([]), ToolRegistry(), bus=bus)
    session = runtime.create_session()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    connected = threading.Event()
    done_at: list[float] = []

    async def client() -> None:
        decoder = SSEDecoder()
        got = 0
        url = f"http://127.0.0.1:{port}/sessions/{session.id}/events"
        async with httpx.AsyncClient(timeout=None) as c:
            async with c.stream("GET", url, headers={"Last-Event-ID": "0"}) as resp:
                connected.set()
                async for chunk in resp.aiter_bytes():
                    got += sum(1 for ev in decoder.feed(chunk) if ev.event == "llm_delta")
                    if got >= n:
                        done_at.append(time.perf_counter())
                        return

    reader = threading.Thread(target=lambda: asyncio.run(client()))
    reader.start()
    connected.wait(30)
    time.sleep(0.2)  # the server has subscribed
    t0 = time.perf_counter()
    for _ in range(n):
        bus.publish(session.topic, "llm_delta", PAYLOAD)
    reader.join(120)
    server.should_exit = True
    if not done_at:
        raise SystemExit("the SSE client did not receive every event")
    return n / (done_at[0] - t0)


def main() -> None:
    anchor = max(asyncio.run(in_process(EVENTS)) for _ in range(3))
    sse = max(over_sse(EVENTS) for _ in range(2))
    print(f"agent_sse: {EVENTS} events, one subscriber")
    print(f"  EventBus subscription in process   {anchor:12,.0f} events/s  (anchor)")
    print(f"  EventBus -> SSE -> uvicorn -> httpx {sse:12,.0f} events/s")
    print(f"  ratio SSE / in-process: {sse / anchor:.3f}x")


if __name__ == "__main__":
    main()
