"""Server-Sent Events: encoder, incremental decoder and streaming helpers (WHATWG spec).

Why our own: every Workbench server streams (tokens, agent steps, live metrics) and the client
reads those streams; one encoder/decoder pair keeps both ends agreeing on the edge cases the
spec defines - CRLF / LF / CR line ends (including a CR and LF split across two network chunks),
multi-line data, comments used as keep-alive pings, ``id`` and ``retry`` fields, a leading BOM -
without depending on any web framework.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from .events import Event

__all__ = [
    "SSEDecoder",
    "ServerSentEvent",
    "aiter_sse",
    "encode",
    "encode_comment",
    "encode_event",
    "sse_stream",
]

_NEWLINE = re.compile(r"\r\n|\r|\n")
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One decoded event.

    Attributes:
        data: the data lines joined with ``\\n``.
        event: the event name (``"message"`` when the stream gave none).
        id: the last event ID in effect when the event was dispatched (per the spec it persists
            across events until changed), or None if none was ever set.
        retry: the reconnection time in ms if a ``retry`` field came with this event.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


def _data_text(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, bytes):
        return data.decode("utf-8")
    # default=str: a stray datetime or UUID in a payload must not kill a stream halfway.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def _check_field(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"SSE {name} must not contain a line break: {value!r}")


def encode(
    data: Any,
    *,
    event: str | None = None,
    id: str | int | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one event for the wire.

    Args:
        data: a string (sent as-is, line breaks become several ``data:`` lines) or any
            JSON-serialisable value (sent as compact JSON).
        event: event name; omitted means "message" to the receiver.
        id: event id (the receiver's ``Last-Event-ID`` on reconnect); no line breaks or NUL.
        retry: reconnection time in milliseconds.

    Raises:
        ValueError: a field would break the framing.
    """
    parts: list[str] = []
    if event is not None:
        _check_field("event", event)
        parts.append(f"event: {event}\n")
    if id is not None:
        sid = str(id)
        _check_field("id", sid)
        if "\x00" in sid:
            raise ValueError("SSE id must not contain NUL")
        parts.append(f"id: {sid}\n")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"SSE retry must be a non-negative int, got {retry!r}")
        parts.append(f"retry: {retry}\n")
    for line in _NEWLINE.split(_data_text(data)):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """Encode a comment (each line prefixed with ``:``); receivers ignore it, proxies see
    traffic, so it doubles as a keep-alive ping."""
    lines = _NEWLINE.split(text)
    return ("".join(f": {line}\n" if line else ":\n" for line in lines) + "\n").encode("utf-8")


def encode_event(ev: Event) -> bytes:
    """Encode a bus ``Event``: id = seq, event = type, data = JSON of ``ev.data``."""
    data = json.dumps(ev.data, separators=(",", ":"), ensure_ascii=False, default=str)
    return encode(data, event=ev.type, id=ev.seq)


class SSEDecoder:
    """Incremental decoder: feed bytes (or str) in any chunking, get complete events out.

    Keeps ``last_event_id`` and ``retry`` (the latest reconnection time) for reconnects.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_decoder",
        "_event",
        "_event_retry",
        "_has_data",
        "_skip_lf",
        "_started",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf: list[str] = []
        self._started = False
        self._skip_lf = False
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self._event_retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        """Decode a chunk; returns the events it completed (possibly none)."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes | bytearray) else chunk
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        # Only the new text is scanned; an unfinished line waits as a list of pieces, so a huge
        # data line arriving in many chunks (a base64 image) costs linear, not quadratic, time.
        out: list[ServerSentEvent] = []
        pos = 0
        size = len(text)
        for m in _LINE_END.finditer(text):
            end = m.end()
            if end == size and m.group() == "\r":
                # A CR at the very end may be the first half of CRLF: take the line now and drop
                # a LF that starts the next chunk.
                self._skip_lf = True
            line = text[pos : m.start()]
            if self._buf:
                self._buf.append(line)
                line = "".join(self._buf)
                self._buf = []
            self._line(line, out)
            pos = end
        if pos < size:
            self._buf.append(text[pos:])
        return out

    def _line(self, line: str, out: list[ServerSentEvent]) -> None:
        if not line:
            if self._has_data:
                data = "\n".join(self._data)
                out.append(
                    ServerSentEvent(
                        data,
                        self._event or "message",
                        self.last_event_id or None,
                        self._event_retry,
                    )
                )
            self._data = []
            self._has_data = False
            self._event = ""
            self._event_retry = None
            return
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = self._event_retry = int(value)

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: per the spec an unterminated event is discarded, so this only resets
        state and returns no events (present so callers need not know that rule)."""
        self._decoder.decode(b"", final=True)
        self._buf = []
        self._data = []
        self._has_data = False
        self._event = ""
        return []


async def aiter_sse(
    chunks: AsyncIterable[bytes] | AsyncIterable[str],
) -> AsyncIterator[ServerSentEvent]:
    """Decode an async byte (or text) stream, such as ``httpx.Response.aiter_bytes()``."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for ev in decoder.feed(chunk):
            yield ev
    decoder.flush()


def _encode_item(item: Any) -> bytes:
    if isinstance(item, Event):
        return encode_event(item)
    if isinstance(item, ServerSentEvent):
        return encode(item.data, event=item.event, id=item.id, retry=item.retry)
    if isinstance(item, bytes):
        return item
    return encode(item)


async def sse_stream(
    subscription: AsyncIterable[Any],
    heartbeat: float | None = 15.0,
    *,
    retry: int | None = None,
    ping: str = "ping",
) -> AsyncGenerator[bytes, None]:
    """Encode an event source as SSE bytes for any ASGI streaming response.

    Sends a comment ping whenever ``heartbeat`` seconds pass without an event, so proxies keep
    the connection open and a dead client is noticed on the next write. When the stream ends
    (topic closed) or the consumer stops (client disconnected), the subscription is closed.

    Args:
        subscription: a ``Subscription`` or any async iterable of ``Event``,
            ``ServerSentEvent``, pre-encoded ``bytes`` or JSON-able values.
        heartbeat: idle seconds between pings; None disables pings.
        retry: if given, first tell the client its reconnection time (ms).
        ping: the comment text of a ping.
    """
    from .events import Subscription

    if retry is not None:
        yield f"retry: {int(retry)}\n\n".encode()
    pending: asyncio.Future[Any] | None = None
    try:
        if isinstance(subscription, Subscription):
            while True:
                try:
                    ev = await subscription.next(heartbeat)
                except StopAsyncIteration:
                    return
                yield encode_comment(ping) if ev is None else encode_event(ev)
        it = aiter(subscription)
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(it))
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                yield encode_comment(ping)
                continue
            fut, pending = pending, None
            try:
                item = fut.result()
            except StopAsyncIteration:
                return
            yield _encode_item(item)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        closer = getattr(subscription, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
