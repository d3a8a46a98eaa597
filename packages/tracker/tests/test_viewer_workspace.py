"""The workspace read routes over real HTTP: run-name search, the keys runs carry, and curves of
many runs grouped by a config value (mean, min, max per step bucket)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx
import pytest

from workbench_tracker.store import RunInfo
from workbench_tracker.viewer.workspace import group_curves

LRS = (0.1, 0.01)


def _sweep(store: Any) -> dict[str, dict[str, Any]]:
    """Six runs, lr x seed, plus one baseline; loss depends on both so groups differ."""
    made: dict[str, dict[str, Any]] = {}
    for lr in LRS:
        for seed in range(3):
            rid = f"r{lr}-{seed}".replace(".", "")
            cfg = {"lr": lr, "seed": seed, "opt": {"name": "adam" if seed else "sgd"}}
            store.create_run(
                RunInfo(id=rid, project="sweep", name=f"Sweep-LR{lr}-s{seed}", config=cfg)
            )
            store.log_metrics(
                rid, [("loss", s, lr * 10 / (s + 1) + seed * 0.01, 1000.0 + s) for s in range(20)]
            )
            made[rid] = cfg
            time.sleep(0.002)
    store.create_run(RunInfo(id="base", project="sweep", name="baseline", config={"seed": 0}))
    store.log_metrics("base", [("loss", s, 3.0, 1000.0 + s) for s in range(5)])
    store.log_metrics("base", [("acc", s, 0.5, 1000.0 + s) for s in range(5)])
    return made


def test_search_matches_part_of_the_name_or_id_in_any_case(viewer: Any) -> None:
    server, store = viewer
    _sweep(store)
    get = lambda q: httpx.get(f"{server.url}/api/runs", params=q).json()  # noqa: E731
    found = get({"search": "lr0.1-"})
    assert found["total"] == 3 and {r["name"] for r in found["runs"]} == {
        f"Sweep-LR0.1-s{s}" for s in range(3)
    }
    assert [r["id"] for r in get({"search": "BASE"})["runs"]] == ["base"]  # the id matches
    # Search composes with the other filters, the sort and the pager.
    page = get({"search": "sweep", "config.seed": "1", "sort": "name", "limit": 1, "offset": 1})
    assert page["total"] == 2 and [r["name"] for r in page["runs"]] == ["Sweep-LR0.1-s1"]
    assert get({"search": "nothing-like-this"}) == {
        "runs": [],
        "total": 0,
        "limit": 100,
        "offset": 0,
    }


def test_workspace_keys_list_config_summary_and_metric_keys(viewer: Any) -> None:
    server, store = viewer
    _sweep(store)
    store.update_run("base", summary={"loss": 3.0, "best": {"acc": 0.5}})
    body = httpx.get(f"{server.url}/api/workspace/keys", params={"project": "sweep"}).json()
    assert body["config"] == ["lr", "opt.name", "seed"]  # nested keys flatten to dotted
    assert body["summary"] == ["best.acc", "loss"]
    assert body["metrics"] == ["acc", "loss"] and body["total"] == 7
    only = httpx.get(f"{server.url}/api/workspace/keys", params={"search": "baseline"}).json()
    assert only["config"] == ["seed"] and only["total"] == 1


def test_groups_give_mean_min_max_over_each_config_value(viewer: Any) -> None:
    server, store = viewer
    made = _sweep(store)
    r = httpx.get(
        f"{server.url}/api/workspace/groups",
        params={"project": "sweep", "keys": "loss,acc", "group_by": "lr"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    labels = [g["label"] for g in body["groups"]]
    assert labels == ["lr=0.01", "lr=0.1", "lr=none"]  # numeric order, missing last
    assert sorted(body["groups"][1]["runs"]) == sorted(k for k, c in made.items() if c["lr"] == 0.1)
    loss = body["curves"]["loss"]
    for lr in LRS:
        c = loss[f"lr={lr}"]
        assert c["steps"] == list(range(20)) and c["count"] == [3] * 20
        for s in range(20):
            per_seed = [lr * 10 / (s + 1) + seed * 0.01 for seed in range(3)]
            assert c["mean"][s] == pytest.approx(statistics.mean(per_seed))
            assert c["min"][s] == pytest.approx(min(per_seed))
            assert c["max"][s] == pytest.approx(max(per_seed))
    assert loss["lr=none"]["mean"] == [3.0] * 5
    # Only the baseline logged acc: the other groups have no acc curve at all.
    assert list(body["curves"]["acc"]) == ["lr=none"]
    # A nested key groups too; without group_by each run is its own curve.
    nested = httpx.get(
        f"{server.url}/api/workspace/groups",
        params={"project": "sweep", "keys": "loss", "group_by": "opt.name"},
    ).json()
    assert [g["label"] for g in nested["groups"]] == [
        "opt.name=adam",
        "opt.name=sgd",
        "opt.name=none",
    ]
    single = httpx.get(f"{server.url}/api/workspace/groups", params={"keys": "loss"}).json()
    assert len(single["groups"]) == 7 and all(len(g["runs"]) == 1 for g in single["groups"])


def test_group_curves_bucket_long_series_and_skip_nan() -> None:
    series = {
        "a": (list(range(1000)), [1.0] * 1000),
        "b": (list(range(0, 1000, 2)), [float("nan")] + [3.0] * 499),
    }
    out = group_curves(series, {"g": ["a", "b"]}, points=10)["g"]
    assert len(out["steps"]) == 10  # 1000 steps cut into 10 buckets of 100
    assert out["mean"] == [2.0] * 10 and out["min"] == [1.0] * 10 and out["max"] == [3.0] * 10
    assert out["count"] == [2] * 10
    assert group_curves({}, {"g": ["a"]}, points=10) == {}


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/runs", {"search": "x" * 201}, "search"),
        ("/api/workspace/keys", {"bogus": "1"}, "bogus"),
        ("/api/workspace/keys", {"status": "sleeping"}, "status"),
        ("/api/workspace/groups", {"keys": "loss", "pointz": "3"}, "pointz"),
        ("/api/workspace/groups", {}, "keys"),
        ("/api/workspace/groups", {"keys": ","}, "keys"),
        ("/api/workspace/groups", {"keys": ",".join(f"k{i}" for i in range(11))}, "keys"),
        ("/api/workspace/groups", {"keys": "loss", "points": "1"}, "points"),
        ("/api/workspace/groups", {"keys": "loss", "points": "99999999999999999999999"}, "points"),
        ("/api/workspace/groups", {"keys": "loss", "config.": "1"}, "config."),
    ],
)
def test_workspace_bad_input_is_a_422_naming_the_parameter(
    viewer: Any, path: str, params: dict[str, str], param: str
) -> None:
    server, _ = viewer
    r = httpx.get(f"{server.url}{path}", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param
