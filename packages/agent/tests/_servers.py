"""Real uvicorn servers on loopback for the agent's tests, and a fake Gemini REST/SSE endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yields its base URL; stops it on exit."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class FakeGemini:
    """Speaks the Gemini API's REST wire format from a script.

    ``script`` entries, one per request: a ``GenerateContentResponse`` JSON dict (answered as JSON
    or, for ``:streamGenerateContent?alt=sse``, as one SSE event), a list of such dicts (SSE
    chunks), or ``{"status": 429, "headers": {...}, "body": {...}}`` for an error. ``requests``
    records each request's path, query, headers and JSON body.
    """

    def __init__(self, script: list[Any], *, chunk_delay: float = 0.0) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.chunk_delay = chunk_delay
        self.disconnected = asyncio.Event()
        self.stream_closed = threading.Event()
        self.app = FastAPI()
        self.app.add_api_route("/{version}/models/{rest:path}", self.handle, methods=["POST"])

    async def handle(self, version: str, rest: str, request: Request) -> Response:
        body = json.loads(await request.body())
        model, _, method = rest.partition(":")
        self.requests.append(
            {
                "version": version,
                "model": model,
                "method": method,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        step = self.script.pop(0)
        if isinstance(step, dict) and "status" in step:
            return JSONResponse(
                step["body"], status_code=step["status"], headers=step.get("headers")
            )
        if method == "generateContent":
            return JSONResponse(step)
        chunks = step if isinstance(step, list) else [step]

        async def sse() -> Any:
            try:
                for c in chunks:
                    if self.chunk_delay:
                        await asyncio.sleep(self.chunk_delay)
                    yield f"data: {json.dumps(c, ensure_ascii=False)}\r\n\r\n".encode()
            finally:
                self.stream_closed.set()

        return StreamingResponse(sse(), media_type="text/event-stream")


def text_chunk(
    text: str, *, finish: str | None = None, usage: tuple[int, int] | None = None
) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [cand], "modelVersion": "gemini-fake"}
    if usage:
        out["usageMetadata"] = {
            "promptTokenCount": usage[0],
            "candidatesTokenCount": usage[1],
            "totalTokenCount": usage[0] + usage[1],
        }
    return out


def call_chunk(name: str, args: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
    fc: dict[str, Any] = {"name": name, "args": args}
    if call_id:
        fc["id"] = call_id
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"functionCall": fc}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
    }
