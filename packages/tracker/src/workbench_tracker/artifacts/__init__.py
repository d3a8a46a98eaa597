"""Artifacts: content-addressed, versioned files and directories with aliases and lineage.

``Run.log_artifact`` / ``Run.use_artifact`` delegate to :func:`log_artifact` and
:func:`use_artifact` here; the viewer's ``/api/artifacts`` and ``/api/lineage`` routes use
:class:`ArtifactStore` directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from workbench_tracker.artifacts._store import (
    ArtifactError,
    ArtifactInUseError,
    ArtifactNotFoundError,
    ArtifactStore,
    ArtifactVersionInfo,
    parse_ref,
)

__all__ = [
    "ArtifactError",
    "ArtifactInUseError",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ArtifactVersionInfo",
    "artifact_store_for",
    "log_artifact",
    "parse_ref",
    "use_artifact",
]


def _http_client(run: Any) -> Any:
    """The httpx client of an HTTP-backed store (a remote tracker server), else None."""
    store = getattr(run, "store", None)
    if getattr(store, "engine", None) is not None:
        return None
    client = getattr(store, "_client", None)
    return client if client is not None and hasattr(client, "post") else None


def _raise_for(resp: Any) -> None:
    if resp.status_code < 400:
        return
    try:
        message = str(resp.json()["error"]["message"])
    except Exception:
        message = resp.text[:500]
    if resp.status_code == 404:
        raise ArtifactNotFoundError(message)
    if resp.status_code == 409:
        raise ArtifactInUseError(message, [message])
    if resp.status_code in (400, 422):
        raise ValueError(message)
    raise ArtifactError(f"tracker server answered {resp.status_code}: {message}")


def _info_from(data: dict[str, Any]) -> ArtifactVersionInfo:
    fields = {k: v for k, v in data.items() if k not in ("ref", "label")}
    return ArtifactVersionInfo(**fields)


def _log_http(
    client: Any,
    run: Any,
    path: Path,
    name: str,
    type: str,
    metadata: dict[str, Any] | None,
    aliases: list[str] | None,
) -> ArtifactVersionInfo:
    import json
    import tempfile
    import zipfile

    from workbench_tracker.paths import validate_name

    validate_name(name, "name")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "artifact.zip"
        with zipfile.ZipFile(body, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            if path.is_file():
                zf.write(path, arcname=path.name)
            else:
                kind_files = ArtifactStore._collect(path)[1]
                for rel, full in kind_files:
                    zf.write(full, arcname=rel)
        params: list[tuple[str, str]] = [
            ("project", str(run.project)),
            ("type", type),
            ("kind", "file" if path.is_file() else "dir"),
            ("run_id", str(run.id)),
            *[("aliases", a) for a in aliases or []],
        ]
        if metadata:
            params.append(("metadata", json.dumps(metadata)))
        with body.open("rb") as fh:
            resp = client.post(
                f"/api/artifacts/{name}/versions",
                params=params,
                content=fh,
                headers={"content-type": "application/zip"},
            )
    _raise_for(resp)
    return _info_from(resp.json())


def _use_http(client: Any, run: Any, ref: str) -> Path:
    import io
    import shutil
    import zipfile

    from workbench_tracker.paths import safe_join, workbench_home

    name, selector = parse_ref(ref)
    resp = client.post(
        f"/api/artifacts/{name}/{selector}/use",
        params={"project": str(run.project), "run_id": str(run.id)},
    )
    _raise_for(resp)
    info = _info_from(resp.json())
    label = f"v{info.version}"
    dl = client.get(f"/api/artifacts/{name}/{label}/download", params={"project": run.project})
    _raise_for(dl)
    token = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(run.project))[:100]
    target = workbench_home() / "artifacts" / "remote" / token / name / label
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if info.kind == "file":
        dest = safe_join(target, (info.files or [{"path": name}])[0]["path"], "path")
        dest.write_bytes(dl.content)
        return dest
    with zipfile.ZipFile(io.BytesIO(dl.content)) as zf:
        for m in zf.infolist():
            if m.is_dir():
                continue
            dest = safe_join(target, m.filename, "path")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)
    return target


def artifact_store_for(run: Any) -> ArtifactStore:
    """The ArtifactStore sharing the run's database engine.

    Raises:
        TypeError: when the run's store is not SQLAlchemy-backed (e.g. an HTTP store), since
            artifacts are then logged through the remote tracker server instead.
    """
    store = getattr(run, "store", None)
    engine = getattr(store, "engine", None)
    if engine is None:
        raise TypeError(
            "artifacts need a SQLAlchemy-backed store (run.store.engine); "
            f"got {type(store).__name__}"
        )
    root = getattr(store, "artifacts_root", None)
    return ArtifactStore(engine, Path(root) if root else None)


def log_artifact(
    run: Any,
    path_or_dir: str | os.PathLike[str],
    name: str,
    type: str,
    metadata: dict[str, Any] | None = None,
    aliases: list[str] | None = None,
) -> ArtifactVersionInfo:
    """Log a file or directory as an artifact version produced by ``run``.

    Identical content logged again does not create a new version; ``latest`` moves to it.
    With an HTTP store (a remote tracker server) the content is uploaded as a zip.
    """
    client = _http_client(run)
    if client is not None:
        return _log_http(client, run, Path(path_or_dir), name, type, metadata, aliases)
    return artifact_store_for(run).log(
        str(run.project),
        path_or_dir,
        name,
        type,
        run_id=str(run.id),
        metadata=metadata,
        aliases=aliases,
    )


def use_artifact(run: Any, ref: str) -> Path:
    """Record that ``run`` used ``name:alias_or_version`` and return its local path.

    With an HTTP store the version is downloaded under ``WORKBENCH_HOME/artifacts/remote``.
    """
    client = _http_client(run)
    if client is not None:
        return _use_http(client, run, ref)
    return artifact_store_for(run).use(str(run.project), ref, run_id=str(run.id))
