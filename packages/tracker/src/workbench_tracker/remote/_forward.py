"""Local port forwarding over an SSH transport (``ssh -L`` done in-process).

A local listening socket on loopback accepts connections; each one opens its own
``direct-tcpip`` channel to the remote viewer and two directions are pumped until either side
closes. Because bytes are relayed unchanged in both directions, HTTP keep-alive, streaming and
WebSocket upgrades all work through the tunnel.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import paramiko

__all__ = ["PortForwarder"]

log = logging.getLogger(__name__)
_BUF = 64 * 1024


class PortForwarder:
    """Forward ``local_host:local_port`` to ``remote_host:remote_port`` through SSH.

    Args:
        transport: returns the current transport (it changes after a reconnect).
        remote_host, remote_port: destination as seen from the SSH server.
        local_port: 0 picks a free port (read it back from ``.local_port``).
    """

    def __init__(
        self,
        transport: Callable[[], paramiko.Transport | None],
        remote_host: str,
        remote_port: int,
        local_host: str = "127.0.0.1",
        local_port: int = 0,
    ) -> None:
        self._transport = transport
        self.remote_host, self.remote_port = remote_host, remote_port
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((local_host, local_port))
        self._sock.listen(64)
        self._sock.settimeout(0.5)
        self.local_host = local_host
        self.local_port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: set[tuple[socket.socket, paramiko.Channel]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name="wt-forward", daemon=True)
        self.connections = 0

    def start(self) -> PortForwarder:
        """Start accepting."""
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(
                target=self._handle, args=(conn, addr), name="wt-forward-conn", daemon=True
            ).start()

    def _handle(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        transport = self._transport()
        if transport is None or not transport.is_active():
            conn.close()
            return
        try:
            chan = transport.open_channel(
                "direct-tcpip", (self.remote_host, self.remote_port), addr, timeout=15
            )
        except (paramiko.SSHException, OSError) as exc:
            log.warning("could not open tunnel channel: %s", exc)
            conn.close()
            return
        self.connections += 1
        pair = (conn, chan)
        with self._lock:
            self._conns.add(pair)
        try:
            self._pump(conn, chan)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            # The SSH transport dropped (reconnect pending) or the browser went away.
            log.debug("tunnel connection ended: %s", exc)
        finally:
            with self._lock:
                self._conns.discard(pair)
            chan.close()
            conn.close()

    def _pump(self, conn: socket.socket, chan: paramiko.Channel) -> None:
        conn.setblocking(True)
        local_open = True
        while not self._stop.is_set():
            watch: list[Any] = [chan, conn] if local_open else [chan]
            r, _, _ = select.select(watch, [], [], 1.0)
            if conn in r:
                data = conn.recv(_BUF)
                if not data:
                    local_open = False
                    chan.shutdown_write()  # half-close: the viewer may still answer
                else:
                    chan.sendall(data)
            if chan in r:
                data = chan.recv(_BUF)
                if not data:
                    return
                conn.sendall(data)

    def stop(self) -> None:
        """Stop listening and close every open tunnel connection."""
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            pairs = list(self._conns)
        for conn, chan in pairs:
            chan.close()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        if self._thread.is_alive():
            self._thread.join(2)
