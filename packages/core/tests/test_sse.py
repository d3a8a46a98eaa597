"""sse: encoder/decoder agreement under any chunking (property test) and the stream helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench_core.events import Event, EventBus
from workbench_core.sse import (
    ServerSentEvent,
    SSEDecoder,
    aiter_sse,
    encode,
    encode_comment,
    encode_event,
    sse_stream,
)

# Text without line breaks (they are the framing) or NUL (invalid in ids).
_line_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"),
    max_size=12,
)
_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=8)


@st.composite
def _event(draw: st.DrawFn) -> dict:
    return {
        "lines": draw(st.lists(_line_text, min_size=1, max_size=4)),
        "event": draw(st.none() | _name),
        "id": draw(st.none() | _line_text),
        "retry": draw(st.none() | st.integers(min_value=0, max_value=10**6)),
        "comment": draw(st.none() | _line_text),
    }


def _wire(events: list[dict], eol: str, bom: bool, space: bool) -> tuple[bytes, list]:
    """Build a stream by hand (not with our encoder) and the events the spec says it holds."""
    sep = ": " if space else ":"

    def value(text: str) -> str:
        # The spec strips exactly one space after the colon, whichever separator we wrote.
        return text[1:] if not space and text.startswith(" ") else text

    out = ["\ufeff"] if bom else []
    expected = []
    last_id = ""
    for ev in events:
        if ev["comment"] is not None:
            out.append(f":{ev['comment']}{eol}")
        if ev["event"] is not None:
            out.append(f"event{sep}{ev['event']}{eol}")
        if ev["id"] is not None:
            out.append(f"id{sep}{ev['id']}{eol}")
            last_id = value(ev["id"])
        if ev["retry"] is not None:
            out.append(f"retry{sep}{ev['retry']}{eol}")
        for line in ev["lines"]:
            out.append(f"data{sep}{line}{eol}")
        out.append(eol)
        expected.append(
            ServerSentEvent(
                "\n".join(value(line) for line in ev["lines"]),
                ev["event"] or "message",
                last_id or None,
                ev["retry"],
            )
        )
    return "".join(out).encode("utf-8"), expected


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_event(), min_size=1, max_size=5),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    space=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_chunking_of_a_valid_stream_decodes_to_the_same_events(
    events: list[dict], eol: str, bom: bool, space: bool, cuts: list[int]
) -> None:
    wire, expected = _wire(events, eol, bom, space)
    decoder = SSEDecoder()
    got = []
    for chunk in _split(wire, cuts):
        got.extend(decoder.feed(chunk))
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(
    data=st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    event=st.none() | _name,
    id=st.none() | _line_text.filter(bool),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
)
def test_encoder_output_decodes_back_with_line_breaks_normalised(
    data: str, event: str | None, id: str | None, cuts: list[int]
) -> None:
    wire = encode(data, event=event, id=id)
    decoder = SSEDecoder()
    got = [ev for chunk in _split(wire, cuts) for ev in decoder.feed(chunk)]
    normalised = data.replace("\r\n", "\n").replace("\r", "\n")
    assert got == [ServerSentEvent(normalised, event or "message", id)]


def test_cr_at_end_of_one_chunk_and_lf_at_start_of_next_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [ServerSentEvent("a\nb")]
    # The LF after that final CR must not be taken as another (empty) line: the next event
    # still needs its own blank line.
    assert decoder.feed(b"\ndata: c\r\n") == []
    assert decoder.feed(b"\r\n") == [ServerSentEvent("c")]


def test_comments_pings_and_unknown_fields_are_ignored() -> None:
    decoder = SSEDecoder()
    stream = b": ping\n\n:\n\nfoo: bar\ndata\ndata:x\n\n"
    assert decoder.feed(stream) == [ServerSentEvent("\nx")]


def test_blank_line_without_data_dispatches_nothing_and_resets_event_name() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: a\n\ndata: x\n\n") == [ServerSentEvent("x", "message")]


def test_id_persists_across_events_and_nul_id_is_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\nid\ndata: d\n\n")
    assert [e.id for e in events] == ["7", "7", "7", None]
    assert decoder.last_event_id == ""


def test_retry_field_only_accepts_digits() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: 3000\ndata: a\n\nretry: 3s\ndata: b\n\n")
    assert [e.retry for e in events] == [3000, None]
    assert decoder.retry == 3000


def test_multibyte_utf8_split_across_chunks() -> None:
    wire = "data: héllo ✓\n\n".encode()
    decoder = SSEDecoder()
    got = [ev for i in range(len(wire)) for ev in decoder.feed(wire[i : i + 1])]
    assert got == [ServerSentEvent("héllo ✓")]


def test_huge_data_line_in_many_small_chunks_arrives_whole() -> None:
    payload = "x" * 200_000
    wire = encode(payload, event="image")
    decoder = SSEDecoder()
    got = [ev for i in range(0, len(wire), 1000) for ev in decoder.feed(wire[i : i + 1000])]
    assert len(got) == 1 and got[0].data == payload and got[0].event == "image"


def test_leading_bom_is_stripped_only_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("\ufeffdata: a\n\n".encode()) == [ServerSentEvent("a")]
    assert decoder.feed("\ufeffdata: b\n\n".encode()) == []  # a BOM later is a field name


def test_unterminated_event_at_end_of_stream_is_discarded() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: partial\n") == []
    assert decoder.flush() == []


def test_encode_json_values_and_fields() -> None:
    assert encode({"a": 1}, event="step", id=3, retry=500) == (
        b'event: step\nid: 3\nretry: 500\ndata: {"a":1}\n\n'
    )
    assert encode("x\ny") == b"data: x\ndata: y\n\n"
    assert encode_comment("ping") == b": ping\n\n"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event": "a\nb"}, "event"),
        ({"id": "1\r"}, "id"),
        ({"id": "a\x00"}, "id"),
        ({"retry": -1}, "retry"),
    ],
)
def test_encode_rejects_fields_that_would_break_framing(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        encode("x", **kwargs)


def test_encode_event_uses_seq_type_and_json() -> None:
    wire = encode_event(Event("t", 12, "token", 0.0, {"text": "hi"}))
    (ev,) = SSEDecoder().feed(wire)
    assert (ev.id, ev.event, ev.json()) == ("12", "token", {"text": "hi"})


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        await asyncio.sleep(0)
        yield p


async def test_aiter_sse_decodes_an_async_byte_stream() -> None:
    wire = encode("a") + encode_comment("ping") + encode({"b": 2}, event="x")
    got = [ev async for ev in aiter_sse(_chunks([wire[:5], wire[5:17], wire[17:]]))]
    assert [e.data for e in got] == ["a", '{"b":2}']
    assert got[1].event == "x"


async def test_sse_stream_sends_pings_when_idle_and_events_then_ends_on_close() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    out: list[bytes] = []

    async def consume() -> None:
        async for chunk in sse_stream(sub, heartbeat=0.01, retry=2000):
            out.append(chunk)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    bus.publish("t", "step", {"n": 1})
    await asyncio.sleep(0.02)
    bus.close_topic("t")
    await asyncio.wait_for(task, 2)
    assert out[0] == b"retry: 2000\n\n"
    assert b": ping\n\n" in out
    events = SSEDecoder().feed(b"".join(out))
    assert [(e.event, e.id, e.json()) for e in events] == [("step", "1", {"n": 1})]


async def test_sse_stream_closes_the_subscription_when_the_client_goes_away() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    gen = sse_stream(sub, heartbeat=None)
    bus.publish("t", "a", 1)
    assert b"event: a" in await gen.__anext__()
    await gen.aclose()
    assert bus.subscriber_count("t") == 0


async def test_sse_stream_accepts_any_async_iterable_and_pings_without_cancelling_it() -> None:
    produced: list[int] = []

    async def slow_source() -> AsyncIterator[object]:
        await asyncio.sleep(0.05)
        produced.append(1)
        yield ServerSentEvent("x", "tok", "1")
        yield {"done": True}
        yield b"data: raw\n\n"

    chunks = [c async for c in sse_stream(slow_source(), heartbeat=0.01)]
    assert chunks[0] == b": ping\n\n"
    events = SSEDecoder().feed(b"".join(chunks))
    assert [(e.event, e.data) for e in events] == [
        ("tok", "x"),
        ("message", json.dumps({"done": True}, separators=(",", ":"))),
        ("message", "raw"),
    ]
    assert produced == [1]


async def test_sse_over_a_real_socket_delivers_events_and_frees_the_subscription_on_disconnect() -> (
    None
):
    # A minimal HTTP/1.1 server on 127.0.0.1 (stdlib only: core depends on no web framework)
    # streams sse_stream() bytes; the client reads in small odd-sized chunks so frames split
    # wherever the kernel and the reads fall, and decodes them with aiter_sse.
    bus = EventBus()
    server_done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        sub = bus.subscribe("t", last_seq=0)
        stream = sse_stream(sub, heartbeat=0.02)
        try:
            async for chunk in stream:
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            await stream.aclose()
            writer.close()
            server_done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus.publish("t", "token", {"text": "héllo\nwörld"})
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nhost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")

        async def chunks() -> AsyncIterator[bytes]:
            while data := await reader.read(7):
                yield data

        got = []
        async for ev in aiter_sse(chunks()):
            got.append(ev)
            if len(got) == 1:
                bus.publish("t", "done", {"ok": True})
            else:
                break
        assert [(e.event, e.id, e.json()) for e in got] == [
            ("token", "1", {"text": "héllo\nwörld"}),
            ("done", "2", {"ok": True}),
        ]
        assert bus.subscriber_count("t") == 1
        writer.close()
        await writer.wait_closed()
        # The next ping hits the closed socket; the server side unsubscribes.
        await asyncio.wait_for(server_done.wait(), 10)
        assert bus.subscriber_count("t") == 0
    finally:
        server.close()
        await server.wait_closed()
