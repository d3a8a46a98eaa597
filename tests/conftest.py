"""Cross-package integration fixtures: one real ``workbench dev`` subprocess per test session.

The server runs exactly as a user runs it (the ``workbench`` console script, uvicorn, a free
port on 127.0.0.1, a temporary ``WORKBENCH_HOME``), and every test talks to it over HTTP, so the
paths under test cross process and package boundaries for real.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from wb_integration import READY_TIMEOUT_S, DevServer, free_port, server_env, workbench_cmd


@pytest.fixture(scope="session")
def devserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """Start ``workbench dev`` on a free port and wait until ``/readyz`` says ready."""
    root = tmp_path_factory.mktemp("devserver")
    home = root / "home"
    home.mkdir()
    port = free_port()
    env = server_env(home)
    log_path = root / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*workbench_cmd(), "dev", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = DevServer(f"http://127.0.0.1:{port}", home, log_path, env, proc)
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    try:
        with httpx.Client(timeout=5.0) as http:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"workbench dev exited with {proc.returncode}:\n{server.log()}")
                try:
                    resp = http.get(f"{server.base_url}/readyz")
                    last = f"{resp.status_code} {resp.text}"
                    if resp.status_code == 200:
                        break
                except httpx.HTTPError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"workbench dev not ready after {READY_TIMEOUT_S:.0f}s "
                        f"(last /readyz: {last}):\n{server.log()[-5000:]}"
                    )
                time.sleep(0.5)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def http(devserver: DevServer) -> Iterator[httpx.Client]:
    with devserver.client() as client:
        yield client
