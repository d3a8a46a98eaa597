from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _servers import UvicornThread
from _stub_app import StubState, build_stub_app

from workbench_core.retry import RetryPolicy

# Tiny delays so retry tests run instantly; enough attempts to ride out injected faults.
FAST = RetryPolicy(max_attempts=4, initial_delay=0.001, max_delay=0.01, jitter=0.0)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_API_KEY", raising=False)
    monkeypatch.delenv("WORKBENCH_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def stub() -> Iterator[tuple[str, StubState]]:
    state = StubState()
    server = UvicornThread(build_stub_app(state)).start()
    yield server.url, state
    server.stop()


@pytest.fixture()
def stub_url(stub: tuple[str, StubState]) -> str:
    stub[1].seen.clear()
    stub[1].attempts.clear()
    stub[1].applied.clear()
    stub[1].required_key = None
    return stub[0]


@pytest.fixture()
def stub_state(stub: tuple[str, StubState], stub_url: str) -> StubState:
    return stub[1]


# ---------------------------------------------------------------- the real serving server

SERVED_MODELS = os.environ.get("WB_CLIENT_TEST_MODELS", "tiny-llama,tiny-sd,tiny-qwen-vl").split(
    ","
)
TEXT_MODEL = "tiny-llama"
TRAINING_MODELS = [m for m in os.environ.get("WB_CLIENT_TEST_TRAINING", TEXT_MODEL).split(",") if m]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real workbench-serving app under uvicorn on loopback, tiny presets, ready to serve."""
    import time

    from workbench_client import Workbench
    from workbench_serving.app import create_app
    from workbench_serving.settings import ServingSettings

    saved = os.environ.get("WORKBENCH_HOME")
    if not saved:
        os.environ["WORKBENCH_HOME"] = str(tmp_path_factory.mktemp("workbench-home"))
    settings = ServingSettings(
        host="127.0.0.1", models=SERVED_MODELS, training_models=TRAINING_MODELS, api_keys=[]
    )
    srv = UvicornThread(create_app(settings)).start()
    try:
        with Workbench(base_url=srv.url, retry_policy=FAST) as wb:
            deadline = time.monotonic() + 600
            while True:
                try:
                    wb.service.ready()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.25)
        yield srv.url
    finally:
        srv.stop()
        if not saved:
            os.environ.pop("WORKBENCH_HOME", None)
