"""Real loopback servers for the tests: uvicorn in a thread, and a fault-injecting proxy."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from collections import Counter
from typing import Any


def bind_free_socket() -> socket.socket:
    """A listening-ready socket on a free loopback port (no race between pick and bind)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class UvicornThread:
    """Runs an ASGI app with real uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._sock = bind_free_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout: float = 300.0) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn exited during startup")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self._sock.close()


class FaultProxy:
    """An HTTP/1.1 reverse proxy on loopback that injects faults into a seeded share of requests.

    A seeded share of requests fail; the failing ones take the kinds in turn: ``ok`` (forward), ``503`` (answer 503 itself), ``429`` (answer
    429 with ``Retry-After``), ``reset`` (RST the client connection before forwarding) or
    ``drop`` (forward to the server, read its whole answer, then close the client connection
    without a byte: the server did the work, the client never hears of it).
    """

    FAULTS = ("503", "429", "reset", "drop")

    def __init__(
        self,
        upstream_port: int,
        *,
        fault_rate: float = 0.3,
        seed: int = 1234,
        fault_paths: tuple[str, ...] | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.fault_rate = fault_rate
        self.fault_paths = fault_paths  # only requests whose path contains one of these fail
        self.log: list[tuple[str, str]] = []  # (fault, request line) per request
        self._rng = random.Random(seed)
        self._turn = -1
        self.counts: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._sock = bind_free_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._sock)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _draw(self, request_line: str) -> str:
        if self.fault_paths is not None and not any(p in request_line for p in self.fault_paths):
            return "ok"
        if self._rng.random() >= self.fault_rate:
            return "ok"
        # Which requests fail is seeded; the kinds take turns so every kind shows up.
        self._turn += 1
        return self.FAULTS[self._turn % len(self.FAULTS)]

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await reader.readexactly(length) if length else b""
        return head + body

    @staticmethod
    def _with_connection_close(request: bytes) -> bytes:
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._read_request(reader)
            if request is None:
                writer.close()
                return
            request_line = request.split(b"\r\n", 1)[0].decode("latin-1")
            fault = self._draw(request_line)
            self.counts[fault] += 1
            self.log.append((fault, request_line))
            if fault == "reset":
                self._reset(writer)
                return
            if fault in ("503", "429"):
                body = (
                    b'{"error": {"type": "unavailable", "message": "injected fault",'
                    b' "request_id": null, "param": null}}'
                )
                status = b"503 Service Unavailable" if fault == "503" else b"429 Too Many Requests"
                extra = b"Retry-After: 0\r\n" if fault == "429" else b""
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\n"
                    + extra
                    + b"Content-Type: application/json\r\nConnection: close\r\n"
                    + b"Content-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(self._with_connection_close(request))
            await up_writer.drain()
            if fault == "drop":
                await up_reader.read()  # the server finishes the work...
                up_writer.close()
                self._reset(writer)  # ...and the client never hears of it
                return
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
            up_writer.close()
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
