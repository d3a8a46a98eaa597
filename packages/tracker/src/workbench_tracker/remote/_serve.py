"""Entry point run *on the remote host*: serve the tracker viewer on loopback, report the port.

``python -m workbench_tracker.remote._serve --port-file F`` binds 127.0.0.1 on a free port
(binding port 0 ourselves avoids the race of "find a free port, then start uvicorn on it"),
writes the port to ``F`` only once uvicorn is accepting, and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

_APP_FACTORIES = [
    ("workbench_tracker.viewer", "create_app"),
    ("workbench_tracker.viewer.app", "create_app"),
    ("workbench_tracker.api", "create_app"),
    ("workbench_tracker", "create_app"),
]


def load_app() -> Any:
    """Build the tracker viewer app from wherever the installed version defines it."""
    errors = []
    for module, attr in _APP_FACTORIES:
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            errors.append(f"{module}.{attr}: {exc}")
            continue
        return factory()
    raise SystemExit("no tracker viewer found: " + "; ".join(errors))


def main(argv: list[str] | None = None) -> None:
    """Serve until terminated."""
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument(
        "--heartbeat",
        default=None,
        help="exit when this file's mtime is older than --heartbeat-timeout",
    )
    ap.add_argument("--heartbeat-timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("--host: the remote viewer only binds loopback (it is reached via SSH)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(load_app(), log_level="warning", lifespan="on"))
    port_file = Path(args.port_file)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            tmp = port_file.with_suffix(".tmp")
            tmp.write_text(f"{port} {os.getpid()}\n")
            tmp.replace(port_file)

    def watch_heartbeat(path: Path, timeout: float) -> None:
        # The local side touches the file while it is connected. When it vanishes (laptop
        # closed, process killed) the viewer stops by itself instead of running forever.
        while not server.should_exit:
            time.sleep(min(5.0, timeout / 4))
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                age = float("inf")
            if age > timeout:
                server.should_exit = True

    threading.Thread(target=announce, daemon=True).start()
    if args.heartbeat:
        Path(args.heartbeat).touch()
        threading.Thread(
            target=watch_heartbeat,
            args=(Path(args.heartbeat), args.heartbeat_timeout),
            daemon=True,
        ).start()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
