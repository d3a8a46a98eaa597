"""Exports (CSV, JSON, Parquet, TensorBoard), archive round trip, TensorBoard import."""

from __future__ import annotations

import csv
import json
import math
import zipfile
from pathlib import Path

import pytest
from _extras_fixtures import EngineStore, RunHandle, make_engine, seed_runs

from workbench_tracker.artifacts import ArtifactStore, log_artifact, use_artifact
from workbench_tracker.exporting import (
    ArchiveError,
    export_project,
    export_runs,
    import_archive,
    import_tensorboard,
    load_runs,
)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    eng = make_engine(tmp_path)
    seed_runs(eng)
    return eng


def test_csv_export_has_one_row_per_point_and_keeps_nan(engine, tmp_path):
    runs = load_runs(engine, project="proj", tags=["even"])
    assert [r.id for r in runs] == ["run0"]
    dest = export_runs(runs, "csv", tmp_path / "out.csv")
    rows = list(csv.DictReader(dest.open()))
    assert len(rows) == 20 + 20 + 2
    weird = {int(r["step"]): float(r["value"]) for r in rows if r["key"] == "weird"}
    assert math.isnan(weird[0]) and weird[1] == math.inf


def test_json_export_groups_metrics_per_run_with_config(engine, tmp_path):
    dest = export_runs(load_runs(engine, project="proj"), "json", tmp_path / "out.json")
    data = json.loads(dest.read_text())
    by_id = {r["id"]: r for r in data["runs"]}
    assert by_id["run1"]["config"]["lr"] == pytest.approx(0.2)
    assert by_id["run1"]["metrics"]["loss"][0][:2] == [0, 2.0]
    assert by_id["run0"]["metrics"]["weird"][0][1] == "nan"


def test_parquet_export_reads_back_with_pyarrow(engine, tmp_path):
    import pyarrow.parquet as pq

    dest = export_runs(load_runs(engine, project="proj"), "parquet", tmp_path / "out.parquet")
    table = pq.read_table(dest).to_pydict()
    assert len(table["value"]) == 2 * 40 + 2
    assert set(table["run_id"]) == {"run0", "run1"}


def test_tensorboard_export_reads_back_with_event_accumulator(engine, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    export_runs(load_runs(engine, project="proj", run_ids=["run1"]), "tensorboard", out)
    [rundir] = list(out.iterdir())
    acc = EventAccumulator(str(rundir), size_guidance={"scalars": 0})
    acc.Reload()
    assert {"loss", "acc"} <= set(acc.Tags()["scalars"])
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == list(range(20))
    assert loss[3].value == pytest.approx(1.0 / 4 + 1)


@pytest.mark.slow
def test_tensorboard_logs_from_summary_writer_import_as_runs_once(tmp_path, monkeypatch):
    from tensorboardX import SummaryWriter

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    logdir = tmp_path / "logs"
    for name, scale in (("exp_a", 1.0), ("exp_b", 2.0)):
        w = SummaryWriter(str(logdir / name))
        for step in range(15):
            w.add_scalar("train/loss", scale / (step + 1), step)
        w.add_scalar("eval/acc", 0.9, 14)
        w.close()
    eng = make_engine(tmp_path)
    first = import_tensorboard(eng, logdir, "tbproj")
    assert len(first["imported"]) == 2
    runs = {r.name: r for r in load_runs(eng, project="tbproj")}
    assert set(runs) == {"exp_a", "exp_b"}
    loss_b = [m for m in runs["exp_b"].metrics if m[0] == "train/loss"]
    assert len(loss_b) == 15 and loss_b[0][2] == pytest.approx(2.0)
    assert "tensorboard" in runs["exp_a"].tags
    second = import_tensorboard(eng, logdir, "tbproj")
    assert second["imported"] == [] and len(second["skipped"]) == 2


def _with_artifacts(engine, tmp_path):
    store = EngineStore(engine)
    prod, cons = RunHandle("run0", "proj", store), RunHandle("run1", "proj", store)
    d = tmp_path / "dataset"
    d.mkdir()
    (d / "train.csv").write_text("x,y\n1,2\n")
    log_artifact(prod, d, "data", "dataset", metadata={"rows": 1}, aliases=["best"])
    use_artifact(cons, "data:best")


def test_archive_round_trip_preserves_runs_metrics_config_and_artifacts(
    engine, tmp_path, monkeypatch
):
    _with_artifacts(engine, tmp_path)
    archive = tmp_path / "proj.zip"
    manifest = export_project(engine, "proj", archive)
    assert manifest["counts"]["runs"] == 2 and manifest["counts"]["artifact_versions"] == 1

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "other-home"))
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    target = make_engine(target_dir)
    result = import_archive(target, archive)
    assert sorted(result["imported"]) == ["run0", "run1"]
    orig = {r.id: r for r in load_runs(engine, project="proj")}
    back = {r.id: r for r in load_runs(target, project="proj")}
    for rid in orig:
        assert back[rid].config == orig[rid].config
        assert back[rid].tags == orig[rid].tags
        assert len(back[rid].metrics) == len(orig[rid].metrics)
    weird = [m for m in back["run0"].metrics if m[0] == "weird"]
    assert math.isnan(weird[0][2]) and weird[1][2] == math.inf
    art = ArtifactStore(target)
    info = art.get("proj", "data:best", files=True)
    assert info.metadata == {"rows": 1}
    assert art.use("proj", "data:best").joinpath("train.csv").read_text() == "x,y\n1,2\n"
    edges = {(e["source"], e["kind"]) for e in art.lineage("proj")["edges"]}
    assert ("run:run0", "produced") in edges and ("artifact:data:v0", "used") in edges

    again = import_archive(target, archive)
    assert again["imported"] == [] and sorted(again["skipped"]) == ["run0", "run1"]
    assert len(load_runs(target, project="proj")) == 2
    assert len(art.list_versions("proj", "data")) == 1


def test_archive_import_with_remapped_ids_is_idempotent(engine, tmp_path):
    archive = tmp_path / "proj.zip"
    export_project(engine, "proj", archive)
    first = import_archive(engine, archive, project="copy", remap_ids=True)
    assert len(first["imported"]) == 2 and not set(first["imported"]) & {"run0", "run1"}
    second = import_archive(engine, archive, project="copy", remap_ids=True)
    assert second["imported"] == []
    copies = load_runs(engine, project="copy", with_metrics=False)
    assert len(copies) == 2
    assert {c.environment["imported_from"]["run_id"] for c in copies} == {"run0", "run1"}


def test_zip_slip_and_corrupt_archives_are_refused(engine, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
        zf.writestr("manifest.json", "{}")
    with pytest.raises(ArchiveError, match=r"\.\."):
        import_archive(engine, evil)
    archive = tmp_path / "ok.zip"
    export_project(engine, "proj", archive)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "runs/run0.json":
                data = data.replace(b"name-0", b"name-X")
            dst.writestr(item, data)
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = make_engine(fresh_dir)
    with pytest.raises(ArchiveError, match="corrupt"):
        import_archive(fresh, tampered)
    assert load_runs(fresh) == []  # nothing half-written
    not_zip = tmp_path / "nope.zip"
    not_zip.write_text("hello")
    with pytest.raises(ArchiveError, match="archive"):
        import_archive(engine, not_zip)


def test_cli_export_and_import_round_trip(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from workbench_tracker.cli import tracker

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    seed_runs(make_engine(src_dir))
    src = f"sqlite:///{src_dir / 'tracker.db'}"
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    runner = CliRunner()
    r = runner.invoke(
        tracker,
        [
            "export",
            "--store",
            src,
            "--project",
            "proj",
            "--format",
            "archive",
            "-o",
            str(tmp_path / "a.zip"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "2 runs" in r.output
    r = runner.invoke(
        tracker,
        [
            "export",
            "--store",
            src,
            "--tag",
            "odd",
            "--format",
            "json",
            "-o",
            str(tmp_path / "odd.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in json.loads((tmp_path / "odd.json").read_text())["runs"]] == ["run1"]
    r = runner.invoke(tracker, ["import", "--store", dst, str(tmp_path / "a.zip")])
    assert r.exit_code == 0 and "imported 2 runs" in r.output, r.output
    r = runner.invoke(tracker, ["import", "--store", dst, str(tmp_path / "a.zip")])
    assert "imported 0 runs, skipped 2" in r.output
    r = runner.invoke(
        tracker, ["export", "--store", src, "--format", "archive", "-o", str(tmp_path / "b.zip")]
    )
    assert r.exit_code != 0 and "--project" in r.output


def test_archive_handles_free_form_run_ids_and_refuses_missing_blobs(tmp_path, monkeypatch):
    from workbench_tracker.exporting import RunRecord, write_run

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    eng = make_engine(tmp_path)
    write_run(
        eng, RunRecord(id="my run/1 ü", project="odd", name="odd", metrics=[("loss", 0, 1.0, 0.0)])
    )
    archive = tmp_path / "odd.zip"
    export_project(eng, "odd", archive)
    with zipfile.ZipFile(archive) as zf:
        assert not [n for n in zf.namelist() if "my run" in n]
    other = tmp_path / "other"
    other.mkdir()
    target = make_engine(other)
    assert import_archive(target, archive)["imported"] == ["my run/1 ü"]
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "artifacts/index.json":
                data = json.dumps(
                    [
                        {
                            "name": "x",
                            "type": "t",
                            "version": 0,
                            "kind": "file",
                            "files": [{"path": "f", "sha256": "ab" * 32}],
                        }
                    ]
                ).encode()
            if item != "manifest.json":
                dst.writestr(item, data)
        manifest = json.loads(src.read("manifest.json"))
        manifest["checksums"].pop("artifacts/index.json")
        dst.writestr("manifest.json", json.dumps(manifest))
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = make_engine(fresh_dir)
    with pytest.raises(ArchiveError, match="missing"):
        import_archive(fresh, bad)
    assert load_runs(fresh) == []  # validated before anything was written


def test_a_long_imported_run_charts_like_a_logged_one(tmp_path: Path) -> None:
    """Imports write the per-block summaries too: a downsampled read of a long imported series
    (which reads those summaries, not every row) must see every point the import wrote."""
    import numpy as np

    from workbench_tracker.exporting import RunRecord, write_run
    from workbench_tracker.store import get_store

    engine = make_engine(tmp_path)
    n = 80_000  # above points * BLOCK_STEPS / 4 for points=1000: the block-summary path
    values = np.sin(np.arange(n) / 500.0)
    values[12_345] = 50.0  # a spike every downsampling must keep
    values[40_000] = math.nan
    metrics = [("loss", s, float(v), 1e9 + s) for s, v in enumerate(values)]
    rec = RunRecord(id="imp", project="proj", name="imp", metrics=metrics)
    assert write_run(engine, rec)
    store = get_store(str(engine.url), cached=False)
    for method in ("lttb", "minmax"):
        s = store.metric_series_downsampled("imp", "loss", points=1000, method=method)
        assert 500 <= len(s) <= 1100, (method, len(s))
        assert s.steps[0] == 0 and s.steps[-1] == n - 1
        assert 12_345 in s.steps and s.values[s.steps.index(12_345)] == 50.0
        assert 40_000 in s.steps and math.isnan(s.values[s.steps.index(40_000)])
    # Replacing the run rewrites its summaries instead of adding to the old ones.
    rec.metrics = metrics[:70_000]
    assert write_run(engine, rec, replace=True)
    s = store.metric_series_downsampled("imp", "loss", points=1000)
    assert s.steps[-1] == 69_999
    assert store.metric_keys("imp")["loss"]["count"] == 70_000
    store.close()
