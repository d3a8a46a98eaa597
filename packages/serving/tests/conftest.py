"""Real servers for the serving tests: uvicorn on a free loopback port, tiny presets.

Tests work with or without ``WORKBENCH_HOME``/``WORKBENCH_MODELS_DIR`` set: without them, a
session temp directory is used (presets are built there once per session).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    base_url: str
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def state(self) -> Any:
        return self.app.state.serving

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kw.pop("timeout", 120.0), **kw)

    def metric(self, name: str, **labels: str) -> float:
        """Read one sample from /metrics (0.0 when absent)."""
        with self.client() as c:
            text = c.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def start_server(settings: Any, *, wait_ready: bool = True, **app_kw: Any) -> RunningServer:
    import uvicorn

    from workbench_serving.app import create_app

    app = create_app(settings, **app_kw)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    running = RunningServer(f"http://127.0.0.1:{port}", app, server, thread)
    if wait_ready:
        with running.client() as c:
            while True:
                r = c.get("/api/v1/readyz")
                if r.status_code == 200:
                    break
                if r.json().get("status") == "error" or time.monotonic() > deadline:
                    running.stop()
                    raise RuntimeError(f"models did not load: {r.text}")
                time.sleep(0.1)
    return running


@pytest.fixture(scope="session", autouse=True)
def _workbench_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    created = []
    for var in ("WORKBENCH_HOME", "WORKBENCH_MODELS_DIR"):
        if not os.environ.get(var):
            path = tmp_path_factory.mktemp(var.lower())
            os.environ[var] = str(path)
            created.append(var)
    yield Path(os.environ["WORKBENCH_HOME"])
    for var in created:
        os.environ.pop(var, None)


@pytest.fixture(scope="session")
def server_factory(_workbench_home: Path) -> Any:
    """``start_server(settings, **create_app_kwargs) -> RunningServer``; call ``.stop()``."""
    return start_server


@pytest.fixture(scope="session")
def server(_workbench_home: Path) -> Iterator[RunningServer]:
    """All tiny presets (text + training, image, vision) behind one real uvicorn server."""
    from workbench_serving.settings import BatchingSettings, ServingSettings

    settings = ServingSettings(
        host="127.0.0.1",
        models=["tiny-llama", "tiny-sd", "tiny-qwen-vl"],
        training_models=["tiny-llama"],
        api_keys=[],
        device="cpu",
        dtype="float32",
        batching=BatchingSettings(max_batch_size=16, max_wait_ms=20, max_queue_size=256),
        max_request_bytes=2 * 1024 * 1024,
        max_image_size=64,
        max_image_steps=4,
        max_images_per_request=2,
        request_timeout_s=60,
        max_training_runs=64,
    )
    running = start_server(settings)
    yield running
    running.stop()
