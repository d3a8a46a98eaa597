"""Artifacts, lineage and export through the real viewer (uvicorn) and the real Run SDK."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest
from _extras_fixtures import LiveServer

import workbench_tracker as wt
from workbench_tracker.store.sql import SQLStore
from workbench_tracker.viewer import create_app


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    store = SQLStore(f"sqlite:///{tmp_path / 'tracker.db'}")
    with (
        LiveServer(create_app(store)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield store, client, tmp_path
    store.close()


def _runs_with_artifacts(store: SQLStore, tmp_path: Path) -> tuple[str, str]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("hello")
    with wt.init(project="p", name="prep", store=store, capture_env=False) as prep:
        prep.log({"loss": 1.0})
        prep.log_artifact(data, "dataset", "dataset", metadata={"n": 1}, aliases=["best"])
        (tmp_path / "model.bin").write_bytes(b"\x00\x01")
        prep.log_artifact(tmp_path / "model.bin", "model", "model")
    with wt.init(project="p", name="train", store=store, capture_env=False) as train:
        path = train.use_artifact("dataset:best")
        assert (path / "train.txt").read_text() == "hello"
        train.log({"loss": 0.5})
    return prep.id, train.id


def test_artifact_list_versions_download_and_lineage_over_http(live):
    store, client, tmp = live
    prep_id, train_id = _runs_with_artifacts(store, tmp)
    listing = client.get("/api/artifacts", params={"project": "p"}).json()["artifacts"]
    assert {a["name"] for a in listing} == {"dataset", "model"}
    versions = client.get("/api/artifacts/dataset/versions", params={"project": "p"}).json()
    assert versions["versions"][0]["aliases"] == ["best", "latest"]
    info = client.get("/api/artifacts/dataset/best", params={"project": "p"}).json()
    assert info["files"][0]["path"] == "train.txt" and info["created_by_run"] == prep_id
    z = client.get("/api/artifacts/dataset/v0/download", params={"project": "p"})
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(z.content)).read("train.txt") == b"hello"
    f = client.get("/api/artifacts/model/latest/download", params={"project": "p"})
    assert f.content == b"\x00\x01"
    graph = client.get("/api/lineage", params={"project": "p"}).json()
    edges = {(e["source"], e["kind"], e["target"]) for e in graph["edges"]}
    assert (f"run:{prep_id}", "produced", "artifact:dataset:v0") in edges
    assert ("artifact:dataset:v0", "used", f"run:{train_id}") in edges
    names = {n["id"]: n.get("name") for n in graph["nodes"]}
    assert names[f"run:{prep_id}"] == "prep" and names[f"run:{train_id}"] == "train"


def test_delete_answers_409_while_used_and_404_for_unknown(live):
    store, client, tmp = live
    _runs_with_artifacts(store, tmp)
    r = client.delete("/api/artifacts/dataset", params={"project": "p"})
    assert r.status_code == 409
    assert "used by run" in r.json()["error"]["message"]
    assert client.delete("/api/artifacts/model", params={"project": "p"}).status_code == 200
    r = client.get("/api/artifacts/model/latest", params={"project": "p"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "name"


def test_alias_can_be_moved_and_removed_over_http(live):
    store, client, tmp = live
    _runs_with_artifacts(store, tmp)
    r = client.put(
        "/api/artifacts/model/aliases/prod", params={"project": "p"}, json={"version": "v0"}
    )
    assert r.status_code == 200 and "prod" in r.json()["aliases"]
    assert client.delete("/api/artifacts/model", params={"project": "p"}).status_code == 409
    r = client.delete("/api/artifacts/model/aliases/prod", params={"project": "p"})
    assert r.status_code == 200
    assert client.delete("/api/artifacts/model", params={"project": "p"}).status_code == 200


def test_export_download_and_archive_import_over_http(live):
    store, client, tmp = live
    _runs_with_artifacts(store, tmp)
    csv = client.get("/api/export", params={"project": "p", "format": "csv"})
    assert csv.status_code == 200 and csv.text.startswith("run_id,")
    assert csv.text.count("\n") == 3  # header + 2 points
    tb = client.get("/api/export", params={"project": "p", "format": "tensorboard"})
    assert zipfile.ZipFile(io.BytesIO(tb.content)).namelist()
    bad = client.get("/api/export", params={"format": "xls"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "format"
    archive = client.get("/api/export/project", params={"project": "p"})
    assert archive.status_code == 200
    r = client.post(
        "/api/import",
        params={"project": "copy", "remap_ids": "true"},
        content=archive.content,
        headers={"content-type": "application/zip"},
    )
    assert r.status_code == 200 and len(r.json()["imported"]) == 2
    again = client.post(
        "/api/import", params={"project": "copy", "remap_ids": "true"}, content=archive.content
    )
    assert again.json()["imported"] == []
    assert store.list_runs(project="copy")[1] == 2
    junk = client.post("/api/import", content=b"not a zip")
    assert junk.status_code == 400 and junk.json()["error"]["param"] == "archive"


def test_artifacts_work_through_an_http_store_against_a_remote_tracker(live, tmp_path):
    from workbench_tracker.store.http import HTTPStore

    _, client, _ = live
    remote = HTTPStore(str(client.base_url))
    d = tmp_path / "upload"
    (d / "nested").mkdir(parents=True)
    (d / "nested" / "w.bin").write_bytes(b"weights")
    (d / "cfg.json").write_text("{}")
    with wt.init(project="far", name="producer", store=remote, capture_env=False) as prod:
        info = prod.log_artifact(d, "ckpt", "model", metadata={"step": 10}, aliases=["best"])
        again = prod.log_artifact(d, "ckpt", "model")
        single = prod.log_artifact(d / "cfg.json", "cfg", "config")
    assert info.version == 0 and again.version == 0 and info.file_count == 2
    assert single.kind == "file"
    with wt.init(project="far", name="consumer", store=remote, capture_env=False) as cons:
        path = cons.use_artifact("ckpt:best")
        fpath = cons.use_artifact("cfg")
    assert (path / "nested" / "w.bin").read_bytes() == b"weights"
    assert fpath.read_text() == "{}"
    # Downloaded by the SDK (not the server's own materialisation).
    assert "remote" in path.parts and "materialized" not in path.parts
    graph = client.get("/api/lineage", params={"project": "far"}).json()
    edges = {(e["source"], e["kind"], e["target"]) for e in graph["edges"]}
    assert (f"run:{prod.id}", "produced", "artifact:ckpt:v0") in edges
    assert ("artifact:ckpt:v0", "used", f"run:{cons.id}") in edges
    remote.close()
