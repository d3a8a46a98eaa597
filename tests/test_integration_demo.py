"""``workbench demo`` end to end against the session's dev server, then its run in Chromium.

The demo's fine-tune teaches the tiny model the agent's tool call. Whether a 2-layer random model
learns it in the step budget is an empirical fact, so the test holds the demo to honesty either
way: a reproduced call must make the agent really call ``compare_runs``; otherwise the demo
must say plainly that it did not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from wb_integration import DevServer, workbench_cmd

pytestmark = pytest.mark.slow

DEMO_STEPS = int(os.environ.get("WORKBENCH_TEST_DEMO_STEPS", "150"))
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "tracker.png"
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


@pytest.fixture(scope="module")
def demo(devserver: DevServer) -> dict[str, Any]:
    proc = subprocess.run(
        [*workbench_cmd(), "demo", "--base-url", devserver.base_url, "--steps", str(DEMO_STEPS)],
        capture_output=True,
        text=True,
        timeout=420,
        env={**devserver.env, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("DEMO_RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("DEMO_RESULT "))
    result["_stdout"] = proc.stdout
    return result


def test_demo_fine_tunes_logs_and_reports_honestly(
    devserver: DevServer, demo: dict[str, Any]
) -> None:
    assert demo["steps"] >= 1 and len(demo["losses"]) == demo["steps"]
    assert min(demo["losses"][-5:]) < demo["losses"][0]
    assert demo["checkpoint_model"]
    assert demo["image_path"] and Path(demo["image_path"]).read_bytes().startswith(b"\x89PNG")
    assert demo["agent_llm"] and demo["checkpoint_model"] in demo["agent_llm"]
    assert demo["agent_status"] is not None
    if demo["reproduced"]:
        assert demo["agent_tool_called"], demo["_stdout"][-3000:]
    else:
        assert "does NOT reproduce the tool call" in demo["_stdout"]

    with httpx.Client(base_url=f"{devserver.base_url}/tracker/api", timeout=30) as http:
        series = http.get(f"/runs/{demo['train_run']}/series", params={"key": "loss"}).json()
        assert len(series["steps"]) == demo["steps"]
        run = http.get(f"/runs/{demo['train_run']}").json()
        assert json.dumps(run).count("lora-finetune") >= 1


def test_demo_checkpoint_is_an_artifact_produced_by_the_run_that_used_the_dataset(
    devserver: DevServer, demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(devserver.home))
    from workbench_tracker.artifacts import ArtifactStore
    from workbench_tracker.store import get_store

    store = get_store(cached=False)
    artifacts = ArtifactStore(store.engine, getattr(store, "artifacts_root", None))  # type: ignore[attr-defined]
    graph = json.dumps(artifacts.lineage("workbench-demo", run_id=demo["train_run"]))
    assert "demo-lora" in graph and "demo-pairs" in graph
    assert "produced" in graph and "used" in graph


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_tracker_ui_shows_the_demo_runs_loss_chart(
    devserver: DevServer, demo: dict[str, Any]
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{devserver.base_url}/tracker/run.html?id={demo['train_run']}")
            card = page.locator('#charts .card[data-key="loss"]')
            card.wait_for(timeout=30_000)
            card.locator(".chart svg").first.wait_for(timeout=30_000)
            assert errors == []
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


def test_demo_starts_its_own_dev_server_when_none_answers_and_stops_it(tmp_path: Path) -> None:
    from wb_integration import free_port, server_env

    base_url = f"http://127.0.0.1:{free_port()}"
    env = {**server_env(tmp_path / "home"), "COLUMNS": "200"}
    proc = subprocess.run(
        [*workbench_cmd(), "demo", "--base-url", base_url, "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "starting workbench dev" in proc.stdout
    # two steps teach nothing, and the demo must say so rather than pretend
    assert "does NOT reproduce the tool call" in proc.stdout
    result = json.loads(
        next(ln for ln in proc.stdout.splitlines() if ln.startswith("DEMO_RESULT ")).split(" ", 1)[
            1
        ]
    )
    assert result["reproduced"] is False and result["steps"] == 2
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base_url}/healthz", timeout=2)
