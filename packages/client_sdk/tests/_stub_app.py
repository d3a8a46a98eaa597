"""A tiny local Starlette app speaking the serving API's wire format, for rare statuses and
pipeline behaviour (retries, idempotency keys, timeouts) that a healthy real server never shows."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from workbench_core import sse


class StubState:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.attempts: dict[str, int] = defaultdict(int)
        self.required_key: str | None = None
        self.applied: list[str] = []


def _error(status: int, message: str, *, param: str | None = None, headers: Any = None) -> Response:
    rid = f"req-{status}"
    body = {"error": {"type": f"t{status}", "message": message, "request_id": rid, "param": param}}
    return JSONResponse(body, status_code=status, headers={"X-Request-ID": rid, **(headers or {})})


def build_stub_app(state: StubState) -> Starlette:
    def record(request: Request) -> None:
        state.seen.append(
            {
                "path": request.url.path,
                "idempotency_key": request.headers.get("idempotency-key"),
                "retry_count": request.headers.get("x-retry-count"),
                "api_key": request.headers.get("x-api-key"),
            }
        )

    async def capabilities(request: Request) -> Response:
        record(request)
        if state.required_key and request.headers.get("x-api-key") != state.required_key:
            return _error(401, "invalid or missing API key")
        return JSONResponse(
            {"models": [{"name": "stub-llm", "kind": "text", "context_length": 256}]},
            headers={"X-Request-ID": "req-caps"},
        )

    async def status(request: Request) -> Response:
        record(request)
        code = int(request.path_params["code"])
        return _error(code, f"server says {code}", param="field_x")

    async def flaky(request: Request) -> Response:
        """Fails ``fail`` times per Idempotency-Key (with ``code``), then answers ok."""
        record(request)
        key = request.headers.get("idempotency-key") or "none"
        fail = int(request.query_params.get("fail", "2"))
        code = int(request.query_params.get("code", "503"))
        state.attempts[key] += 1
        if state.attempts[key] <= fail:
            headers = {}
            if "retry_after" in request.query_params:
                headers["Retry-After"] = request.query_params["retry_after"]
            return _error(code, "try again", headers=headers)
        return JSONResponse({"step": state.attempts[key]})

    async def slow(request: Request) -> Response:
        record(request)
        await asyncio.sleep(float(request.query_params.get("s", "1")))
        return JSONResponse({"step": 1})

    async def bad_body(request: Request) -> Response:
        return JSONResponse({"not_step": True})

    async def sample(request: Request) -> Response:
        record(request)
        body = await request.json()
        text = "abc"
        if body["model"] == "flaky-model":
            key = request.headers.get("idempotency-key") or "none"
            state.attempts[key] += 1
            if state.attempts[key] == 1:
                return _error(503, "warming up")
        if not body.get("stream"):
            return JSONResponse(
                {
                    "model": body["model"],
                    "sequences": [{"tokens": [1, 2, 3], "text": text, "finish_reason": "length"}],
                    "prompt_tokens": 2,
                }
            )

        async def events() -> Any:
            for i, ch in enumerate(text):
                yield sse.encode({"index": 0, "token": i + 1, "text": ch}, event="token")
            if body["model"] == "stream-error":
                yield sse.encode(
                    {"error": {"type": "not_found_error", "message": "gone mid-stream"}},
                    event="error",
                )
                return
            done = {
                "model": body["model"],
                "sequences": [{"tokens": [1, 2, 3], "text": text, "finish_reason": "length"}],
                "prompt_tokens": 2,
            }
            yield sse.encode(json.loads(json.dumps(done)), event="done")

        return StreamingResponse(events(), media_type="text/event-stream")

    async def optim_step(request: Request) -> Response:
        """Fails each key's first attempt with 503; counts applied steps once per key."""
        record(request)
        key = request.headers.get("idempotency-key") or "none"
        state.attempts[key] += 1
        if state.attempts[key] == 1:
            return _error(503, "busy")
        if key not in state.applied:
            state.applied.append(key)
        return JSONResponse({"step": state.applied.index(key) + 1})

    return Starlette(
        routes=[
            Route("/api/v1/training/runs/{run_id}/optim_step", optim_step, methods=["POST"]),
            Route("/api/v1/capabilities", capabilities),
            Route("/api/v1/status/{code:int}", status, methods=["GET", "POST"]),
            Route("/api/v1/flaky", flaky, methods=["POST"]),
            Route("/api/v1/slow", slow, methods=["GET", "POST"]),
            Route("/api/v1/bad_body", bad_body),
            Route("/api/v1/sample", sample, methods=["POST"]),
        ]
    )
