"""Artifacts: dedup, versions, aliases, lineage, materialisation, delete refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from _extras_fixtures import EngineStore, RunHandle, make_engine

from workbench_tracker.artifacts import (
    ArtifactInUseError,
    ArtifactNotFoundError,
    ArtifactStore,
    log_artifact,
    use_artifact,
)
from workbench_tracker.paths import UnsafePathError


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    engine = make_engine(tmp_path)
    store = EngineStore(engine)
    producer = RunHandle("r-prod", "proj", store)
    consumer = RunHandle("r-cons", "proj", store)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("same bytes")
    (data / "sub").mkdir()
    (data / "sub" / "b.txt").write_text("same bytes")
    return engine, producer, consumer, data, tmp_path


def test_identical_files_share_one_blob_and_relogging_same_content_makes_no_new_version(setup):
    engine, producer, _, data, tmp = setup
    v0 = log_artifact(producer, data, "ds", "dataset")
    again = log_artifact(producer, data, "ds", "dataset")
    assert (v0.version, again.version) == (0, 0)
    assert v0.file_count == 2
    store = ArtifactStore(engine)
    blobs = list((store.root / "blobs").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) == 1  # two files, one content
    assert store.root == tmp / "home" / "artifacts"


def test_changed_content_creates_next_version_and_moves_latest(setup):
    engine, producer, _, data, _ = setup
    log_artifact(producer, data, "ds", "dataset")
    (data / "a.txt").write_text("new bytes")
    v1 = log_artifact(producer, data, "ds", "dataset", metadata={"rows": 3}, aliases=["best"])
    assert v1.version == 1
    assert v1.aliases == ["best", "latest"]
    store = ArtifactStore(engine)
    versions = store.list_versions("proj", "ds")
    assert [v.version for v in versions] == [0, 1]
    assert versions[0].aliases == []
    assert store.get("proj", "ds:best").metadata == {"rows": 3}
    store.set_alias("proj", "ds:v0", "best")
    assert store.get("proj", "ds:best").version == 0


def test_use_artifact_materialises_content_and_records_lineage(setup):
    engine, producer, consumer, data, _ = setup
    log_artifact(producer, data, "ds", "dataset")
    path = use_artifact(consumer, "ds:latest")
    assert (path / "a.txt").read_text() == "same bytes"
    assert (path / "sub" / "b.txt").read_text() == "same bytes"
    assert sorted(p.name for p in path.iterdir()) == ["a.txt", "sub"]  # nothing of ours inside
    assert use_artifact(consumer, "ds:v0") == path  # second use reuses the copy
    model = data / "a.txt"
    log_artifact(consumer, model, "model", "model")
    fpath = use_artifact(producer, "model")
    assert fpath.is_file() and fpath.name == "a.txt"
    graph = ArtifactStore(engine).lineage("proj")
    edges = {(e["source"], e["kind"], e["target"]) for e in graph["edges"]}
    assert ("run:r-prod", "produced", "artifact:ds:v0") in edges
    assert ("artifact:ds:v0", "used", "run:r-cons") in edges
    assert ("run:r-cons", "produced", "artifact:model:v0") in edges
    focused = ArtifactStore(engine).lineage("proj", ref="ds:v0")
    assert {n["id"] for n in focused["nodes"]} >= {"run:r-prod", "run:r-cons", "artifact:ds:v0"}


def test_delete_is_refused_while_used_or_custom_aliased_then_allowed(setup):
    engine, producer, consumer, data, _ = setup
    log_artifact(producer, data, "ds", "dataset")
    use_artifact(consumer, "ds:v0")
    store = ArtifactStore(engine)
    with pytest.raises(ArtifactInUseError) as exc:
        store.delete("proj", "ds")
    assert "used by run r-cons" in str(exc.value)
    (data / "a.txt").write_text("v1 bytes")
    log_artifact(producer, data, "ds", "dataset", aliases=["best"])
    with pytest.raises(ArtifactInUseError, match="alias 'best'"):
        store.delete("proj", "ds", "v1")
    store.remove_alias("proj", "ds", "best")
    result = store.delete("proj", "ds", "v1")  # only 'latest' points at it: allowed
    assert result["deleted"] == ["v1"] and result["blobs_removed"] == 1
    assert store.get("proj", "ds:latest").version == 0
    with pytest.raises(ArtifactNotFoundError):
        store.get("proj", "ds:v1")


def test_unused_artifact_deletes_and_its_blobs_leave_the_disk(setup):
    engine, producer, _, data, _ = setup
    log_artifact(producer, data, "ds", "dataset")
    store = ArtifactStore(engine)
    store.delete("proj", "ds")
    assert store.list_artifacts("proj") == []
    assert not [p for p in (store.root / "blobs").rglob("*") if p.is_file()]


def test_bad_names_and_traversal_refs_are_rejected(setup):
    engine, producer, _, data, _ = setup
    with pytest.raises(UnsafePathError) as exc:
        log_artifact(producer, data, "../evil", "dataset")
    assert exc.value.field == "name"
    log_artifact(producer, data, "ds", "dataset")
    store = ArtifactStore(engine)
    with pytest.raises(UnsafePathError):
        store.file_path("proj", "ds", "../../etc/passwd")
    with pytest.raises(UnsafePathError):
        store.file_path("proj", "ds", "/etc/passwd")
    with pytest.raises(UnsafePathError):
        store.set_alias("proj", "ds:v0", "v7")


def test_symlink_leaving_logged_directory_is_not_followed(setup, tmp_path):
    _, producer, _, data, _ = setup
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    (data / "link.txt").symlink_to(secret)
    info = log_artifact(producer, data, "ds", "dataset")
    assert info.file_count == 2


def test_zip_download_contains_every_file(setup, tmp_path):
    import zipfile

    engine, producer, _, data, _ = setup
    log_artifact(producer, data, "ds", "dataset")
    dest = ArtifactStore(engine).zip_version("proj", "ds", tmp_path / "out.zip")
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == ["a.txt", "sub/b.txt"]
        assert zf.read("sub/b.txt") == b"same bytes"
