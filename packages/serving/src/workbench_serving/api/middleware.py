"""Pure ASGI middleware: request ids, body limits, request latency.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses stream and a client disconnect
still reaches the route (the route watches ``receive`` for ``http.disconnect``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workbench_serving.api.errors import error_payload

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "workbench_request_id", default=None
)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIdLogFilter(logging.Filter):
    """Stamps every log record with the current request id (``%(request_id)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return str(value.decode("latin-1"))
            except Exception:
                return None
    return None


class RequestIdMiddleware:
    """Honour a sane client ``X-Request-ID`` or mint one; echo it on every response."""

    def __init__(self, app: ASGIApp, metrics: Any = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _SAFE_ID.match(given) else f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        started = time.monotonic()
        status_holder = {"status": 0}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Never a bare 500 with a traceback: log it with the id, answer our error body.
            logging.getLogger("workbench_serving").exception("unhandled error in request %s", rid)
            if scope["type"] == "http" and status_holder["status"] == 0:
                body = error_payload(
                    rid, 500, "internal error; see the server log for this request id"
                )
                await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            if self.metrics is not None and scope["type"] == "http":
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                self.metrics.request_latency.labels(
                    scope.get("method", "GET"), path, str(status_holder["status"])
                ).observe(time.monotonic() - started)


class BodyLimitMiddleware:
    """Read request bodies up front, refusing anything over ``max_bytes`` with 413.

    Buffering here (bounded) also lets the idempotency layer fingerprint the body; after the body
    the original ``receive`` is passed through so disconnects are still seen.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        declared = _header(scope, b"content-length")
        too_big = error_payload(
            rid,
            413,
            f"body: request body exceeds the limit of {self.max_bytes} bytes",
            param="body",
        )
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse(too_big, status_code=413)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await JSONResponse(too_big, status_code=413)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope.setdefault("state", {})["raw_body"] = body
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
