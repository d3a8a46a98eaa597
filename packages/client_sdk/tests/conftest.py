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
    stub[1].required_key = None
    return stub[0]


@pytest.fixture()
def stub_state(stub: tuple[str, StubState], stub_url: str) -> StubState:
    return stub[1]
