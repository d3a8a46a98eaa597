"""Portable project archives (zip) and TensorBoard log import.

Archive layout (``format = "workbench-tracker-archive"``, ``version = 1``)::

    manifest.json            project, exported_at, run ids, counts, sha256 of every member
    runs/<run_id>.json       run metadata (config, summary, tags, notes, environment, times)
    metrics/<run_id>.parquet the run's metric points (float64: NaN/Inf survive)
    artifacts/index.json     artifact versions with their file manifests and lineage
    artifacts/blobs/<sha256> file contents, stored once

Importing is idempotent: with ids preserved, a run whose id already exists is skipped; with
``remap_ids`` the new id is a hash of (target project, original id), so importing the same
archive twice still adds nothing the second time.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from workbench_tracker.exporting._runs import (
    RunRecord,
    deterministic_run_id,
    load_runs,
    write_run,
)
from workbench_tracker.paths import UnsafePathError, validate_name, validate_relative_path

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveError",
    "export_project",
    "import_archive",
    "import_tensorboard",
]

ARCHIVE_FORMAT = "workbench-tracker-archive"
_MAX_MEMBERS = 1_000_000


def _member(run_id: str) -> str:
    """Archive member stem for a run id (ids are free-form; member names must be plain)."""
    if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$", run_id):
        return run_id
    return "h-" + hashlib.sha256(run_id.encode()).hexdigest()[:32]


class ArchiveError(ValueError):
    """The archive is not a valid workbench archive (message says what is wrong)."""


def _metrics_parquet(rec: RunRecord) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "key": pa.array([m[0] for m in rec.metrics], pa.string()),
            "step": pa.array([m[1] for m in rec.metrics], pa.int64()),
            "value": pa.array([m[2] for m in rec.metrics], pa.float64()),
            "wall_time": pa.array([m[3] for m in rec.metrics], pa.float64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def export_project(
    engine: Engine,
    project: str,
    dest: Path,
    *,
    artifact_root: Path | None = None,
    run_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Write a whole project (or some of its runs) to a zip archive at ``dest``.

    Returns:
        The manifest written into the archive.
    """
    from workbench_tracker.artifacts import ArtifactStore

    runs = load_runs(engine, project=project, run_ids=run_ids)
    store = ArtifactStore(engine, artifact_root)
    artifacts = store.export_rows(project)
    if run_ids:
        wanted = set(run_ids)
        artifacts = [a for a in artifacts if any(e["run_id"] in wanted for e in a["lineage"])]
    checksums: dict[str, str] = {}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        def put(name: str, data: bytes) -> None:
            checksums[name] = hashlib.sha256(data).hexdigest()
            zf.writestr(name, data)

        for rec in runs:
            put(f"runs/{_member(rec.id)}.json", json.dumps(rec.meta(), default=str).encode())
            put(f"metrics/{_member(rec.id)}.parquet", _metrics_parquet(rec))
        put("artifacts/index.json", json.dumps(artifacts, default=str).encode())
        blobs = {f["sha256"] for a in artifacts for f in a.get("files") or []}
        for sha in sorted(blobs):
            zf.write(store.blob_path(sha), f"artifacts/blobs/{sha}")
        manifest = {
            "format": ARCHIVE_FORMAT,
            "version": 1,
            "project": project,
            "exported_at": datetime.now(UTC).isoformat(),
            "runs": [r.id for r in runs],
            "counts": {
                "runs": len(runs),
                "metrics": sum(len(r.metrics) for r in runs),
                "artifact_versions": len(artifacts),
                "blobs": len(blobs),
            },
            "checksums": checksums,
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    tmp.replace(dest)  # a reader never sees a half-written archive
    return manifest


def _read_metrics(data: bytes) -> list[tuple[str, int, float, float]]:
    import pyarrow.parquet as pq

    t = pq.read_table(io.BytesIO(data)).to_pydict()
    return list(zip(t["key"], t["step"], t["value"], t["wall_time"], strict=True))


def import_archive(
    engine: Engine,
    archive: Path,
    *,
    project: str | None = None,
    remap_ids: bool = False,
    artifact_root: Path | None = None,
) -> dict[str, Any]:
    """Import an archive made by :func:`export_project`.

    Args:
        project: import into this project instead of the archived one.
        remap_ids: give runs new (deterministic) ids instead of keeping the archived ones.

    Returns:
        ``{"project", "imported": [ids], "skipped": [ids], "artifact_versions": n}``.

    Raises:
        ArchiveError: when the file is not a valid archive or a member is corrupt/unsafe.
    """
    from workbench_tracker.artifacts import ArtifactStore

    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"archive: not a readable zip file ({exc})") from exc
    with zf:
        names = zf.namelist()
        if len(names) > _MAX_MEMBERS:
            raise ArchiveError("archive: too many members")
        for n in names:  # refuse zip-slip before reading anything
            try:
                validate_relative_path(n, "archive member")
            except UnsafePathError as exc:
                raise ArchiveError(str(exc)) from exc
        try:
            manifest = json.loads(zf.read("manifest.json"))
        except KeyError as exc:
            raise ArchiveError("archive: manifest.json is missing") from exc
        if manifest.get("format") != ARCHIVE_FORMAT:
            raise ArchiveError(f"archive: format is not {ARCHIVE_FORMAT!r}")
        if int(manifest.get("version", 0)) > 1:
            raise ArchiveError(f"archive: version {manifest.get('version')} is newer than 1")

        def read(name: str) -> bytes:
            data = zf.read(name)
            expected = manifest.get("checksums", {}).get(name)
            if expected and hashlib.sha256(data).hexdigest() != expected:
                raise ArchiveError(f"archive: {name} is corrupt (checksum mismatch)")
            return data

        target = project or str(manifest["project"])
        id_map: dict[str, str] = {}
        records: list[RunRecord] = []
        for rid in manifest.get("runs", []):
            if not isinstance(rid, str) or not 0 < len(rid) <= 64:
                raise ArchiveError(f"archive: run id {rid!r} in the manifest is invalid")
            try:
                meta = json.loads(read(f"runs/{_member(rid)}.json"))
            except KeyError as exc:
                raise ArchiveError(f"archive: run {rid!r} is listed but missing") from exc
            new_id = deterministic_run_id(target, rid) if remap_ids else rid
            id_map[rid] = new_id
            env = dict(meta.get("environment") or {})
            if remap_ids or target != meta.get("project"):
                env["imported_from"] = {"run_id": rid, "project": meta.get("project")}
            records.append(
                RunRecord(
                    id=new_id,
                    project=target,
                    name=meta.get("name") or rid,
                    status=meta.get("status") or "finished",
                    config=meta.get("config") or {},
                    summary=meta.get("summary") or {},
                    tags=list(meta.get("tags") or []),
                    notes=meta.get("notes") or "",
                    environment=env,
                    created_at=meta.get("created_at"),
                    finished_at=meta.get("finished_at"),
                    metrics=_read_metrics(read(f"metrics/{_member(rid)}.parquet")),
                )
            )
        artifacts = (
            json.loads(read("artifacts/index.json")) if "artifacts/index.json" in names else []
        )
        members = set(names)
        try:  # validate every artifact row before anything is written
            for row in artifacts:
                validate_name(str(row["name"]), "artifacts.name")
                validate_name(str(row["type"]), "artifacts.type")
                for f in row.get("files") or []:
                    validate_relative_path(str(f["path"]), "artifacts.files.path")
                    validate_name(str(f["sha256"]), "artifacts.files.sha256")
                    if f"artifacts/blobs/{f['sha256']}" not in members:
                        raise ArchiveError(f"archive: blob {f['sha256']} is missing")
        except UnsafePathError as exc:
            raise ArchiveError(f"archive: {exc}") from exc
        except (KeyError, TypeError) as exc:
            raise ArchiveError(f"archive: malformed artifacts/index.json ({exc})") from exc
        imported: list[str] = []
        skipped: list[str] = []
        for rec in records:
            (imported if write_run(engine, rec) else skipped).append(rec.id)
        store = ArtifactStore(engine, artifact_root)
        with tempfile.TemporaryDirectory() as tmp:
            blob_dir = Path(tmp)
            for row in sorted(artifacts, key=lambda r: (r["name"], r["version"])):
                for f in row.get("files") or []:
                    sha = str(f["sha256"])
                    dest = blob_dir / sha
                    if not dest.exists():
                        with zf.open(f"artifacts/blobs/{sha}") as src, dest.open("wb") as out:
                            shutil.copyfileobj(src, out)
                store.import_version(target, row, blob_dir, id_map)
    return {
        "project": target,
        "imported": imported,
        "skipped": skipped,
        "artifact_versions": len(artifacts),
    }


def import_tensorboard(
    engine: Engine, logdir: Path, project: str, *, tags: list[str] | None = None
) -> dict[str, Any]:
    """Import every TensorBoard run directory under ``logdir`` as a tracker run.

    A "run" is each directory holding ``events.out.tfevents.*`` files (as TensorBoard itself
    defines it). Scalars logged as ``simple_value`` and TF2-style scalar tensors are both read.
    Run ids are derived from (project, absolute run path), so importing twice adds nothing.
    """
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        TENSORS,
        EventAccumulator,
    )
    from tensorboard.util import tensor_util

    root = Path(logdir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"logdir: {logdir} is not a directory")
    run_dirs = sorted({p.parent for p in root.rglob("events.out.tfevents.*") if p.is_file()})
    imported: list[str] = []
    skipped: list[str] = []
    for d in run_dirs:
        acc = EventAccumulator(str(d), size_guidance={SCALARS: 0, TENSORS: 0})
        acc.Reload()
        metrics: list[tuple[str, int, float, float]] = []
        tag_map = acc.Tags()
        for tag in tag_map.get("scalars", []):
            metrics += [
                (tag, int(e.step), float(e.value), float(e.wall_time)) for e in acc.Scalars(tag)
            ]
        for tag in tag_map.get("tensors", []):
            for e in acc.Tensors(tag):
                arr = tensor_util.make_ndarray(e.tensor_proto)
                if arr.size == 1 and arr.dtype.kind in "fiu":
                    metrics.append(
                        (tag, int(e.step), float(arr.reshape(-1)[0]), float(e.wall_time))
                    )
        rel = d.relative_to(root).as_posix()
        name = rel if rel != "." else root.name
        rec = RunRecord(
            id=deterministic_run_id(project, f"tensorboard:{d}"),
            project=project,
            name=name,
            tags=[*(tags or []), "tensorboard"],
            environment={"imported_from": {"tensorboard_logdir": str(d)}},
            created_at=(
                datetime.fromtimestamp(min(m[3] for m in metrics), UTC).isoformat()
                if metrics
                else None
            ),
            metrics=metrics,
        )
        (imported if write_run(engine, rec) else skipped).append(rec.id)
    return {"project": project, "imported": imported, "skipped": skipped}
