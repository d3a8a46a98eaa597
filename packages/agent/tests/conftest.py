"""Shared fixtures: an isolated WORKBENCH_HOME, and a real serving server with the tiny presets."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _workbench_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    created = []
    for var in ("WORKBENCH_HOME", "WORKBENCH_MODELS_DIR"):
        if not os.environ.get(var):
            os.environ[var] = str(tmp_path_factory.mktemp(var.lower()))
            created.append(var)
    yield Path(os.environ["WORKBENCH_HOME"])
    for var in created:
        os.environ.pop(var, None)


@pytest.fixture(scope="session")
def serving_url(_workbench_home: Path) -> Iterator[str]:
    """workbench_serving's real app under uvicorn: tiny text (+training), image and vision."""
    if importlib.util.find_spec("workbench_serving") is None:
        pytest.skip("workbench-serving is not installed (a test extra of workbench-agent)")
    from workbench_serving.app import create_app
    from workbench_serving.settings import ServingSettings

    from ._servers import serve

    settings = ServingSettings(
        models=["tiny-llama", "tiny-sd", "tiny-qwen-vl"],
        training_models=["tiny-llama"],
        api_keys=[],
        device="cpu",
        dtype="float32",
    )
    with serve(create_app(settings)) as url:
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=url, timeout=30) as c:
            while True:
                r = c.get("/api/v1/readyz")
                if r.status_code == 200:
                    break
                if r.json().get("status") == "error" or time.monotonic() > deadline:
                    raise RuntimeError(f"serving models did not load: {r.text}")
                time.sleep(0.1)
        yield url
