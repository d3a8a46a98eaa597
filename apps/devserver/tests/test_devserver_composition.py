"""The dev server composes real sub-apps: mounts, lifespans, readiness, landing page, docs."""

from __future__ import annotations

import re

import pytest
from devserver_parts import Part, component
from fastapi.testclient import TestClient

from workbench_devserver import Component, DevServerSettings, create_app
from workbench_devserver._components import _call_factory


def _app(*comps: Component) -> TestClient:
    return TestClient(create_app(DevServerSettings(), components=list(comps)))


def test_sub_app_lifespans_run_inside_the_parent_lifespan() -> None:
    serving, tracker = Part("serving"), Part("tracker")
    client = _app(component(tracker, "tracker", "/tracker"), component(serving, "serving", ""))
    assert serving.events == [] and tracker.events == []
    with client:
        assert serving.events == ["startup"]
        assert tracker.events == ["startup"]
    assert serving.events == ["startup", "shutdown"]
    assert tracker.events == ["startup", "shutdown"]


def test_root_mounted_serving_keeps_its_own_paths() -> None:
    serving, tracker = Part("serving"), Part("tracker")
    with _app(
        component(tracker, "tracker", "/tracker"), component(serving, "serving", "")
    ) as client:
        assert client.get("/api/v1/capabilities").json()["models"][0]["name"] == "tiny-llama"
        assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-llama"
        assert client.get("/tracker/hello").json() == {"part": "tracker"}
        assert client.get("/hello").json() == {"part": "serving"}


def test_bare_mount_path_redirects_to_the_mounted_app() -> None:
    tracker = Part("tracker")
    with _app(component(tracker, "tracker", "/tracker")) as client:
        resp = client.get("/tracker?x=1", follow_redirects=False)
        assert resp.status_code == 307
        assert resp.headers["location"] == "/tracker/?x=1"


def test_readyz_is_503_until_every_part_says_ready() -> None:
    serving, tracker = Part("serving", ready=False), Part("tracker")
    with _app(
        component(tracker, "tracker", "/tracker"), component(serving, "serving", "")
    ) as client:
        resp = client.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["components"] == {"tracker": "ready", "serving": "starting"}
        serving.ready = True
        resp = client.get("/readyz")
        assert resp.status_code == 200
        assert resp.json()["status"] == "ready"
        assert client.get("/healthz").json() == {"status": "ok"}


def test_failed_startup_marks_that_part_failed_and_the_rest_still_serve() -> None:
    broken, serving = Part("tracker", fail_startup=True), Part("serving")
    with _app(
        component(broken, "tracker", "/tracker"), component(serving, "serving", "")
    ) as client:
        status = client.get("/devserver/status").json()
        states = {c["name"]: c["state"] for c in status["components"]}
        assert states == {"tracker": "failed", "serving": "ready"}
        assert "cannot open its store" in status["components"][0]["detail"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/v1/models").status_code == 200


def test_landing_page_links_every_part_and_shows_missing_ones() -> None:
    serving = Part("serving")
    missing = Component(
        name="agent",
        title="Agent",
        mount="/agent",
        links=[("Chat", "/agent/")],
        ready_paths=("/readyz",),
        installed=False,
        error="not installed (No module named 'workbench_agent')",
    )
    with _app(missing, component(serving, "serving", "")) as client:
        page = client.get("/")
        assert page.status_code == 200
        html = page.text
        assert 'href="/docs"' in html and 'href="/readyz"' in html
        assert re.search(r'id="part-agent".*data-state="not installed"', html, re.S)
        assert re.search(r'id="part-serving".*data-state="ready"', html, re.S)
        assert 'href="/hello"' in html
        # a missing part is listed but offers no dead links
        assert 'href="/agent/"' not in html
        # the missing part does not hold readiness hostage
        assert client.get("/readyz").status_code == 200


def test_docs_page_loads_swagger_ui_from_this_server_not_a_cdn() -> None:
    with _app(component(Part("serving"), "serving", "")) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        js = [a for a in assets if a.endswith(".js")]
        assert js, page.text
        for asset in assets:
            assert asset.startswith("/"), asset
            assert client.get(asset).status_code == 200, asset


def test_openapi_merges_mounted_schemas_under_their_real_paths() -> None:
    serving, tracker = Part("serving"), Part("tracker")
    with _app(
        component(tracker, "tracker", "/tracker"), component(serving, "serving", "")
    ) as client:
        spec = client.get("/openapi.json").json()
        paths = spec["paths"]
        assert "/tracker/hello" in paths
        assert "/api/v1/capabilities" in paths and "/v1/models" in paths
        assert "/readyz" in paths  # the dev server's own, not shadowed by serving's
        assert paths["/tracker/hello"]["get"]["tags"][0] == "tracker"
        op_ids = [op["operationId"] for item in paths.values() for op in item.values()]
        assert len(op_ids) == len(set(op_ids))


def test_factory_receives_only_the_keywords_it_declares() -> None:
    seen: dict[str, object] = {}

    def factory(store: object = None) -> str:
        seen["store"] = store
        return "app"

    assert _call_factory(factory, {"store": 1, "base_url": "http://x"}) == "app"
    assert seen == {"store": 1}

    def open_factory(**kwargs: object) -> dict[str, object]:
        return kwargs

    assert _call_factory(open_factory, {"a": 1}) == {"a": 1}


class _FakeInner:
    supports_tools = True


def test_agent_llm_switch_moves_the_agent_onto_a_checkpoint_and_back() -> None:
    from workbench_devserver._agent_llm import SwitchableLLM

    agent = component(Part("agent"), "agent", "/agent")
    inner = _FakeInner()
    agent.llm = SwitchableLLM(inner, "default served model")
    with _app(agent) as client:
        assert client.get("/devserver/agent/llm").json()["llm"] == "default served model"
        resp = client.post("/devserver/agent/llm", json={"model": "run-1:demo"})
        assert resp.status_code == 200
        assert "run-1:demo" in resp.json()["llm"]
        assert resp.json()["model"] == "run-1:demo"
        assert agent.llm.supports_tools is False  # the checkpoint speaks the JSON protocol
        resp = client.post("/devserver/agent/llm", json={"model": None})
        assert resp.json()["llm"] == "default served model"
        assert agent.llm.inner is inner


def test_agent_llm_switch_rejects_a_bad_model_naming_the_field() -> None:
    from workbench_devserver._agent_llm import SwitchableLLM

    agent = component(Part("agent"), "agent", "/agent")
    agent.llm = SwitchableLLM(_FakeInner(), "default")
    with _app(agent) as client:
        resp = client.post("/devserver/agent/llm", json={"model": ""})
        assert resp.status_code == 422
        assert resp.json()["error"]["param"] == "model"
        assert client.get("/devserver/agent/llm").json()["llm"] == "default"


def test_agent_llm_switch_is_a_conflict_without_a_composed_agent() -> None:
    with _app(component(Part("serving"), "serving", "")) as client:
        resp = client.post("/devserver/agent/llm", json={"model": "x"})
        assert resp.status_code == 409
        assert resp.json()["error"]["type"] == "conflict"


def test_render_prompt_is_what_the_checkpoint_llm_sends() -> None:
    from types import SimpleNamespace

    from workbench_devserver._agent_llm import _render_messages, render_prompt

    msgs = [
        SimpleNamespace(role="system", content="long tool manifest"),
        SimpleNamespace(role="user", content="Compare my runs"),
        SimpleNamespace(role="assistant", content='{"type": "tool"}'),
        SimpleNamespace(role="tool", content="...", name="compare_runs"),
    ]
    assert _render_messages(msgs) == render_prompt("Compare my runs", ["compare_runs"])
    assert "manifest" not in _render_messages(msgs)
    assert _render_messages(msgs[:2]) == "Question: Compare my runs\nAction:"


def test_with_api_keys_the_tracker_and_agent_need_one_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_API_KEYS", "k1,k2")
    tracker, agent = Part("tracker"), Part("agent")
    with _app(component(tracker, "tracker", "/tracker"), component(agent, "agent", "/agent")) as c:
        denied = c.get("/tracker/hello")
        assert denied.status_code == 401
        assert denied.json()["error"]["param"] == "api_key"
        assert c.get("/agent/hello", headers={"X-API-Key": "nope"}).status_code == 401
        assert c.get("/agent/hello", headers={"X-API-Key": "k2"}).json() == {"part": "agent"}
        assert c.get("/tracker/hello", headers={"Authorization": "Bearer k1"}).status_code == 200
        assert c.get("/tracker/readyz").status_code == 200  # probes stay open
        assert c.get("/readyz").status_code == 200
        # a browser: ?api_key= once, then the cookie carries it
        first = c.get("/tracker/hello?api_key=k1")
        assert first.status_code == 200
        assert "HttpOnly" in first.headers["set-cookie"]
        assert c.get("/tracker/hello").status_code == 200
        c.cookies.clear()
        assert c.post("/devserver/agent/llm", json={"model": "x"}).status_code == 401
