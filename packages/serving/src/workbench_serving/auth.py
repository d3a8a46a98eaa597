"""API-key authentication (``X-API-Key`` or ``Authorization: Bearer``).

Open only in dev mode: no keys configured *and* bound to loopback; ``check_bind_is_safe`` makes
the server refuse to start otherwise. Probes (``healthz``/``readyz``) stay open so orchestrators
can check liveness without a secret.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from workbench_serving.api.errors import error_payload

OPEN_PATHS = frozenset({"/api/v1/healthz", "/api/v1/readyz"})


def extract_key(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> str | None:
    """The API key a request carries, if any (header first, then ``?api_key=`` for WebSockets)."""
    for name, value in headers:
        lname = name.lower()
        if lname == b"x-api-key":
            return value.decode("latin-1").strip()
        if lname == b"authorization":
            text = value.decode("latin-1").strip()
            if text.lower().startswith("bearer "):
                return text[7:].strip()
    for part in query.split(b"&"):
        if part.startswith(b"api_key="):
            from urllib.parse import unquote

            return unquote(part[8:].decode("latin-1"))
    return None


def principal_of(key: str | None) -> str:
    """A stable, non-secret id of the caller (scopes idempotency keys per caller)."""
    if not key:
        return "anonymous"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys if k]

    def _valid(self, key: str | None) -> bool:
        if key is None:
            return False
        given = key.encode()
        return any(hmac.compare_digest(given, k) for k in self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        key = extract_key(scope.get("headers", []), scope.get("query_string", b""))
        scope.setdefault("state", {})["principal"] = principal_of(key)
        if not self.keys or scope.get("path") in OPEN_PATHS or self._valid(key):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401, "reason": "invalid API key"})
            return
        rid = scope.get("state", {}).get("request_id")
        msg = (
            "missing API key: send X-API-Key or Authorization: Bearer"
            if key is None
            else "invalid API key"
        )
        body = error_payload(rid, 401, msg, param="api_key", code="invalid_api_key")
        await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(
            scope, receive, send
        )
