"""The default composition, built from the real installed packages."""

from __future__ import annotations

import importlib.util

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount

from workbench_devserver import DevServerSettings, build_components, create_app

INSTALLED = all(
    importlib.util.find_spec(m) is not None
    for m in ("workbench_serving", "workbench_tracker", "workbench_agent")
)


@pytest.mark.skipif(not INSTALLED, reason="needs serving, tracker and agent installed")
def test_default_composition_mounts_every_installed_part() -> None:
    settings = DevServerSettings(port=8123)
    comps = build_components(settings)
    assert {c.name: c.error for c in comps} == {"tracker": None, "agent": None, "serving": None}
    app = create_app(settings, components=comps)
    mounts = {r.path: r.name for r in app.routes if isinstance(r, Mount)}
    assert mounts["/tracker"] == "tracker"
    assert mounts["/agent"] == "agent"
    assert mounts[""] == "serving"
    # the root mount comes last, so the dev server's own routes and sub-mounts win
    assert [r for r in app.routes if isinstance(r, Mount)][-1].path == ""
    agent = next(c for c in comps if c.name == "agent")
    assert agent.llm is not None and "127.0.0.1:8123" in agent.llm.description


@pytest.mark.skipif(not INSTALLED, reason="needs serving, tracker and agent installed")
def test_without_lifespan_nothing_claims_to_be_ready() -> None:
    # No `with`: the parent lifespan never runs, so no sub-app lifespan ran either.
    client = TestClient(create_app(DevServerSettings()))
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert set(resp.json()["components"].values()) == {"starting"}
    page = client.get("/").text
    assert 'http-equiv="refresh"' in page  # reloads itself until everything is ready
    for part in ("tracker", "agent", "serving"):
        assert f'id="part-{part}"' in page


@pytest.mark.skipif(not INSTALLED, reason="needs serving, tracker and agent installed")
def test_with_a_gemini_key_the_agent_runs_on_gemini(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench_agent import GeminiLLM

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("WORKBENCH_GEMINI_MODEL", "gemini-test")
    comps = build_components(DevServerSettings(serving=False, tracker=False))
    (agent,) = comps
    assert agent.error is None
    assert isinstance(agent.llm.inner, GeminiLLM)
    assert agent.llm.description == "Gemini (gemini-test)"
