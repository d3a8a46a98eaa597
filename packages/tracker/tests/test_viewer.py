"""The viewer over real HTTP (uvicorn on a free loopback port) with a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import httpx
import pytest
from tracker_testutil import ServerThread

from workbench_tracker.store import RunInfo


def _seed(store: Any) -> None:
    for i in range(5):
        store.create_run(
            RunInfo(
                id=f"v{i}",
                project="vision" if i < 3 else "text",
                name=f"run-{i}",
                config={"lr": 0.1 if i % 2 else 0.01, "layers": i},
                tags=["base"] if i < 2 else ["big"],
                status="finished" if i < 4 else "running",
            )
        )
        time.sleep(0.002)
    store.log_metrics("v0", [("loss", s, 1.0 / (s + 1), 1000.0 + s) for s in range(5000)])
    store.log_metrics("v1", [("loss", s, 2.0 / (s + 1), 1000.0 + s) for s in range(100)])


def test_health_and_readiness(viewer: Any) -> None:
    server, _ = viewer
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_runs_filter_by_project_tag_status_and_config(viewer: Any) -> None:
    server, store = viewer
    _seed(store)
    get = lambda q: httpx.get(f"{server.url}/api/runs", params=q).json()  # noqa: E731
    assert get({"project": "vision"})["total"] == 3
    assert {r["id"] for r in get({"tag": "big"})["runs"]} == {"v2", "v3", "v4"}
    assert [r["id"] for r in get({"status": "running"})["runs"]] == ["v4"]
    assert {r["id"] for r in get({"config.lr": "0.1"})["runs"]} == {"v1", "v3"}
    assert {r["id"] for r in get([("config.lr", "0.1"), ("project", "vision")])["runs"]} == {"v1"}
    page = get({"sort": "created_at", "limit": 2, "offset": 2})
    assert [r["id"] for r in page["runs"]] == ["v2", "v3"] and page["total"] == 5
    assert [r["id"] for r in get({"sort": "-config.layers", "limit": 1})["runs"]] == ["v4"]


@pytest.mark.parametrize(
    ("path", "params", "status", "param"),
    [
        ("/api/runs", {"limit": "0"}, 422, "limit"),
        ("/api/runs", {"limit": "abc"}, 422, "limit"),
        ("/api/runs", {"offset": "-1"}, 422, "offset"),
        ("/api/runs", {"status": "weird"}, 422, "status"),
        ("/api/runs", {"sort": "secret"}, 422, "sort"),
        ("/api/runs", {"bogus": "1"}, 422, "bogus"),
        ("/api/runs/v0/series", {}, 422, "key"),
        ("/api/runs/v0/series", {"key": "loss", "points": "1"}, 422, "points"),
        ("/api/runs/v0/series", {"key": "loss", "method": "magic"}, 422, "method"),
        ("/api/runs/nope", {}, 404, "run_id"),
        ("/api/runs/nope/series", {"key": "loss"}, 404, "run_id"),
        ("/api/compare", {"runs": "v0,nope"}, 404, "runs"),
        ("/api/media/999", {}, 404, "media_id"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(
    viewer: Any, path: str, params: dict[str, str], status: int, param: str
) -> None:
    server, store = viewer
    _seed(store)
    r = httpx.get(server.url + path, params=params)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["request_id"]
    assert r.headers["x-request-id"] == err["request_id"]


def test_series_is_downsampled_on_the_server(viewer: Any) -> None:
    server, store = viewer
    _seed(store)
    r = httpx.get(f"{server.url}/api/runs/v0/series", params={"key": "loss", "points": 200})
    body = r.json()
    assert body["total"] == 5000 and 2 <= len(body["steps"]) <= 200
    assert body["steps"][0] == 0 and body["steps"][-1] == 4999
    assert len(body["times"]) == len(body["steps"])
    r = httpx.get(
        f"{server.url}/api/runs/v0/series",
        params={"key": "loss", "points": 200, "method": "minmax"},
    )
    assert len(r.json()["steps"]) <= 204
    raw = httpx.get(f"{server.url}/api/runs/v0/series", params={"key": "loss", "method": "none"})
    assert len(raw.json()["steps"]) == 5000


def test_series_with_envelope_true_adds_the_min_max_band(viewer: Any) -> None:
    server, store = viewer
    store.create_run(RunInfo(id="band", project="p", name="band"))
    values = [float(s % 7) for s in range(1000)]
    values[123] = 99.0
    values[500:510] = [math.nan] * 10
    store.log_metrics("band", [("loss", s, v, 1000.0 + s) for s, v in enumerate(values)])
    url = f"{server.url}/api/runs/band/series"
    for method in ("lttb", "minmax"):
        body = httpx.get(
            url, params={"key": "loss", "points": 200, "method": method, "envelope": "true"}
        ).json()
        assert body["total"] == 1000 and len(body["steps"]) <= 220  # the line is unchanged
        env = body["envelope"]
        assert len(env["steps"]) == 100  # points // 2 buckets of 10 points
        assert env["steps"][:3] == [0, 10, 20] and env["last_steps"][:3] == [9, 19, 29]
        assert env["times"][1] == 1010.0 and env["last_times"][-1] == 1999.0
        assert env["max"][12] == 99.0 and env["min"][12] == 0.0
        assert env["min"][50] == "NaN" and env["max"][50] == "NaN"  # NaN as JSON strings
    body = httpx.get(url, params={"key": "loss", "envelope": "1", "buckets": 4}).json()
    assert body["envelope"]["steps"] == [0, 250, 500, 750]
    assert body["envelope"]["max"] == [99.0, 6.0, 6.0, 6.0]
    plain = httpx.get(url, params={"key": "loss", "points": 200}).json()
    assert "envelope" not in plain
    tiny = httpx.get(url, params={"key": "loss", "points": 2})  # fewest points allowed
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["steps"][0] == 0 and tiny.json()["steps"][-1] == 999


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"key": "loss", "envelope": "maybe"}, 422, "envelope"),
        ({"key": "loss", "envelope": "true", "buckets": 0}, 422, "buckets"),
    ],
)
def test_series_envelope_rejects_bad_values_naming_the_field(
    viewer: Any, params: dict[str, Any], status: int, field: str
) -> None:
    server, store = viewer
    store.create_run(RunInfo(id="bad-band", project="p", name="bad-band"))
    r = httpx.get(f"{server.url}/api/runs/bad-band/series", params=params)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == field and field in r.json()["error"]["message"]
    r = httpx.get(f"{server.url}/api/runs/nope/series", params={"key": "x", "envelope": "true"})
    assert r.status_code == 404


def test_non_finite_values_travel_as_strings(viewer: Any) -> None:
    server, store = viewer
    store.create_run(RunInfo(id="nf", project="p", name="nf"))
    store.log_metrics("nf", [("x", 0, math.nan, 0.0), ("x", 1, math.inf, 0.0), ("x", 2, 1.5, 0.0)])
    body = httpx.get(f"{server.url}/api/runs/nf/series", params={"key": "x"}).json()
    assert body["values"] == ["NaN", "Infinity", 1.5]
    keys = httpx.get(f"{server.url}/api/runs/nf/metrics").json()["keys"]
    assert keys["x"]["count"] == 3 and keys["x"]["last_value"] == 1.5


def test_compare_returns_config_diff_and_overlaid_series(viewer: Any) -> None:
    server, store = viewer
    _seed(store)
    body = httpx.get(f"{server.url}/api/compare", params={"runs": "v0,v1", "points": 50}).json()
    assert body["config_diff"] == {"lr": {"v0": 0.01, "v1": 0.1}, "layers": {"v0": 0, "v1": 1}}
    assert set(body["series"]) == {"v0", "v1"}
    assert len(body["series"]["v0"]["loss"]["steps"]) <= 50


def test_ingest_rejects_bad_rows_and_writes_nothing(viewer: Any) -> None:
    server, store = viewer
    store.create_run(RunInfo(id="ing", project="p", name="ing"))
    url = f"{server.url}/api/ingest/runs/ing/metrics"
    r = httpx.post(url, json={"rows": [["ok", 0, 1.0, 0.0], ["bad", 1, "high", 0.0]]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "rows.1.value"
    r = httpx.post(url, json={"rows": [["ok", -1, 1.0, 0.0]]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "rows.0.step"
    r = httpx.post(url, json={"rows": "nope"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "rows"
    assert store.metric_keys("ing") == {}
    r = httpx.post(f"{server.url}/api/ingest/runs", json={"id": "x", "project": "", "name": "n"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "project"
    r = httpx.patch(f"{server.url}/api/ingest/runs/ing", json={"status": "exploded"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "status"
    r = httpx.patch(f"{server.url}/api/ingest/runs/ing", json={"password": "x"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "password"
    r = httpx.post(
        f"{server.url}/api/ingest/runs",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422


def test_alerts_endpoint_lists_a_runs_alerts(viewer: Any) -> None:
    server, store = viewer
    store.create_run(RunInfo(id="al", project="p", name="al"))
    store.add_alert("al", "nan", "loss became NaN", key="loss", step=7, value=math.nan)
    body = httpx.get(f"{server.url}/api/runs/al/alerts").json()
    assert body["alerts"][0]["kind"] == "nan" and body["alerts"][0]["value"] == "NaN"
    assert body["alerts"][0]["step"] == 7


def test_websocket_pushes_new_points_live(viewer: Any) -> None:
    import websockets

    server, store = viewer
    store.create_run(RunInfo(id="live", project="p", name="live"))
    store.log_metrics("live", [("loss", 0, 1.0, 0.0), ("loss", 1, 0.9, 0.0)])

    async def scenario() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        uri = server.url.replace("http", "ws") + "/api/runs/live/ws"
        async with websockets.connect(uri) as ws:
            await ws.send(json.dumps({"after": {"loss": 0}}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert first == {"type": "status", "status": "running"}
            while sum(len(m.get("steps", [])) for m in got) < 1:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            await asyncio.to_thread(
                store.log_metrics, "live", [("loss", 2, 0.8, 0.0), ("acc", 2, 0.5, 0.0)]
            )
            while {m.get("key") for m in got} != {"loss", "acc"} or sum(
                len(m["steps"]) for m in got if m.get("key") == "loss"
            ) < 2:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            await asyncio.to_thread(store.update_run, "live", status="finished")
            while got[-1].get("type") != "status":
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        return got

    msgs = asyncio.run(scenario())
    loss_steps = [s for m in msgs if m.get("key") == "loss" for s in m["steps"]]
    assert loss_steps == [1, 2]  # resumed after step 0 as asked, then the new point
    assert [s for m in msgs if m.get("key") == "acc" for s in m["steps"]] == [2]
    assert msgs[-1] == {"type": "status", "status": "finished"}


def test_ui_pages_and_plotly_are_served(viewer: Any) -> None:
    server, _ = viewer
    index = httpx.get(server.url + "/")
    assert index.status_code == 200 and "static/app.js" in index.text
    assert 'href="artifacts.html"' in index.text
    for page in ("run.html", "compare.html", "static/app.js", "static/style.css"):
        assert httpx.get(f"{server.url}/{page}").status_code == 200, page
    js = httpx.get(f"{server.url}/static/plotly.min.js")
    assert (
        js.status_code == 200
        and len(js.content) > 1_000_000
        and b"plotly" in js.content[:2000].lower()
    )
    assert httpx.get(f"{server.url}/static/..%2Fcli.py").status_code == 404
    assert httpx.get(f"{server.url}/nope.html").status_code == 404


def test_viewer_works_mounted_under_a_prefix(tmp_path: Any) -> None:
    from fastapi import FastAPI

    from workbench_tracker.store import get_store
    from workbench_tracker.viewer import create_app

    store = get_store(f"sqlite:///{tmp_path / 'm.db'}", cached=False)
    store.create_run(RunInfo(id="m1", project="p", name="mounted"))
    outer = FastAPI()
    outer.mount("/tracker", create_app(store))
    with ServerThread(outer) as server:
        r = httpx.get(f"{server.url}/tracker", follow_redirects=True)
        assert r.status_code == 200 and "static/app.js" in r.text
        assert str(r.url).endswith("/tracker/")
        assert httpx.get(f"{server.url}/tracker/static/app.js").status_code == 200
        body = httpx.get(f"{server.url}/tracker/api/runs").json()
        assert [x["id"] for x in body["runs"]] == ["m1"]
        assert httpx.get(f"{server.url}/tracker/run.html").status_code == 200
    store.close()
