"""Exactly-once mutating POSTs through ``Idempotency-Key``.

The first request with a key runs and its outcome (status, headers, body) is stored; a retry with
the same key gets the stored outcome without running again, so a retried ``optim_step`` is never
applied twice. A duplicate that arrives while the first is still running waits for it. Reusing a
key with a different body or path is a client bug and answers 409.

Only definitive outcomes are stored: 2xx and 4xx other than 429. A 5xx, 429 or 499 means "nothing
happened, try again", so the key is released and a retry runs afresh. Streamed responses
(``text/event-stream``) are not replayable and are not stored.

The store is bounded: LRU over ``max_entries`` with a TTL, both from settings.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workbench_serving.api.errors import error_payload

HEADER = b"idempotency-key"
_MAX_KEY_LEN = 255


@dataclass
class StoredOutcome:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class _Entry:
    fingerprint: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: StoredOutcome | None = None
    expires: float = 0.0


class IdempotencyStore:
    """Bounded LRU + TTL map of (caller, key) to outcome."""

    def __init__(self, max_entries: int = 4096, ttl_s: float = 86400.0) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.replays = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        now = time.monotonic()
        for k in [k for k, e in self._entries.items() if e.outcome is not None and e.expires < now]:
            del self._entries[k]
        while len(self._entries) > self.max_entries:
            # Oldest finished entry first; an in-flight one is never evicted under its waiters.
            victim = next((k for k, e in self._entries.items() if e.outcome is not None), None)
            if victim is None:
                break
            del self._entries[victim]

    def get(self, key: tuple[str, str]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.outcome is not None and entry.expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def begin(self, key: tuple[str, str], fingerprint: str) -> _Entry:
        entry = _Entry(fingerprint)
        self._entries[key] = entry
        self._evict()
        return entry

    def finish(self, key: tuple[str, str], entry: _Entry, outcome: StoredOutcome | None) -> None:
        if outcome is None:
            if self._entries.get(key) is entry:
                del self._entries[key]
        else:
            entry.outcome = outcome
            entry.expires = time.monotonic() + self.ttl_s
        entry.done.set()
        self._evict()


def _storable(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    if status >= 500 or status in (429, 499):
        return False
    for k, v in headers:
        if k.lower() == b"content-type" and v.startswith(b"text/event-stream"):
            return False
    return True


class IdempotencyMiddleware:
    """Runs inside ``BodyLimitMiddleware`` (which buffers the body into ``scope['state']``)."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore, wait_timeout_s: float) -> None:
        self.app = app
        self.store = store
        self.wait_timeout_s = wait_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        raw_key = None
        for k, v in scope.get("headers", []):
            if k.lower() == HEADER:
                raw_key = v.decode("latin-1").strip()
                break
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        rid = state.get("request_id")
        if not raw_key or len(raw_key) > _MAX_KEY_LEN:
            body = error_payload(
                rid,
                400,
                f"Idempotency-Key must be 1-{_MAX_KEY_LEN} characters",
                param="Idempotency-Key",
            )
            await JSONResponse(body, status_code=400)(scope, receive, send)
            return
        fp = hashlib.sha256(
            scope.get("path", "").encode()
            + b"?"
            + scope.get("query_string", b"")
            + b"\n"
            + state.get("raw_body", b"")
        ).hexdigest()
        key = (str(state.get("principal", "anonymous")), raw_key)
        while True:
            entry = self.store.get(key)
            if entry is None:
                break
            if entry.fingerprint != fp:
                body = error_payload(
                    rid,
                    409,
                    f"Idempotency-Key {raw_key!r} was already used with a different request "
                    "(path or body); use a new key for a new request",
                    param="Idempotency-Key",
                    code="idempotency_key_reused",
                )
                await JSONResponse(body, status_code=409)(scope, receive, send)
                return
            if entry.outcome is None:
                try:
                    await asyncio.wait_for(entry.done.wait(), timeout=self.wait_timeout_s)
                except TimeoutError:
                    body = error_payload(
                        rid,
                        409,
                        f"a request with Idempotency-Key {raw_key!r} is still running",
                        param="Idempotency-Key",
                        code="idempotency_key_in_use",
                    )
                    await JSONResponse(body, status_code=409)(scope, receive, send)
                    return
                continue  # finished: replay it, or run again if it was not storable
            await self._replay(entry.outcome, send)
            return
        entry = self.store.begin(key, fp)
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []
        completed = False

        async def capture(message: Message) -> None:
            nonlocal status, headers, completed
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    completed = True
            try:
                await send(message)
            except OSError:
                pass  # the client left; the outcome is still stored for its retry

        outcome: StoredOutcome | None = None
        try:
            await self.app(scope, receive, capture)
            if completed and _storable(status, headers):
                outcome = StoredOutcome(status, headers, b"".join(parts))
        finally:
            self.store.finish(key, entry, outcome)

    async def _replay(self, outcome: StoredOutcome, send: Send) -> None:
        self.store.replays += 1
        headers = [*outcome.headers, (b"idempotent-replayed", b"true")]
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": outcome.body, "more_body": False})
