"""API keys for the parts serving's own auth does not cover.

Serving checks keys on its own routes. Mounted beside it, the tracker and the agent would be open
to anyone who can reach a non-loopback address, which is exactly when keys are configured. This
middleware applies serving's rule (same keys, same headers) to ``/tracker``, ``/agent`` and the
dev server's own mutating routes. Browsers cannot add headers to the UI's own requests, so a valid
``?api_key=`` on a page load also sets an HttpOnly, SameSite=Strict cookie that later requests
carry.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "PartsKeyMiddleware"]

COOKIE = "workbench_api_key"
PROTECTED = ("/tracker", "/agent", "/devserver/agent")
OPEN_SUFFIXES = ("/healthz", "/readyz")


def _header_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        lname = name.lower()
        if lname == b"x-api-key":
            return value.decode("latin-1").strip()
        if lname == b"authorization":
            text = value.decode("latin-1").strip()
            if text.lower().startswith("bearer "):
                return text[7:].strip()
    return None


def _cookie_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


class PartsKeyMiddleware:
    """Require one of ``keys`` on the tracker, agent and dev-server control routes."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys if k]

    def _valid(self, key: str | None) -> bool:
        return key is not None and any(hmac.compare_digest(key.encode(), k) for k in self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] not in ("http", "websocket")
            or not self.keys
            or not path.startswith(PROTECTED)
            or path.endswith(OPEN_SUFFIXES)
        ):
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers", []))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_query = (query.get("api_key") or [None])[0]
        if self._valid(_header_key(headers)) or self._valid(_cookie_key(headers)):
            await self.app(scope, receive, send)
            return
        if self._valid(from_query):
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            assert from_query is not None

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    cookie = (f"{COOKIE}={from_query}; Path=/; HttpOnly; SameSite=Strict").encode(
                        "latin-1"
                    )
                    message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401, "reason": "invalid API key"})
            return
        given = _header_key(headers) or from_query or _cookie_key(headers)
        message = (
            "missing API key: send X-API-Key or Authorization: Bearer (or ?api_key= in a browser)"
            if given is None
            else "invalid API key"
        )
        body = {
            "error": {
                "type": "authentication_error",
                "message": message,
                "request_id": None,
                "param": "api_key",
            }
        }
        await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(
            scope, receive, send
        )
