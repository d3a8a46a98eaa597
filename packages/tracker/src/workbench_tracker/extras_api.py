"""Viewer routes for artifacts, lineage, export/import and remote sessions (``/api/...``).

Included by ``workbench_tracker.viewer.create_app``. Every path- or name-taking parameter is
checked by :mod:`workbench_tracker.paths`; a traversal attempt answers 400 with ``param`` naming
the field. Artifact routes need a SQLAlchemy-backed store (``app.state.store.engine``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from workbench_tracker.paths import UnsafePathError, safe_join, validate_name, workbench_home

__all__ = ["router", "ssh_dir"]

router = APIRouter(prefix="/api", tags=["extras"])


def _api_error(status: int, message: str, param: str | None = None) -> Exception:
    from workbench_tracker.viewer.app import ApiError

    return ApiError(status, message, param=param)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Map extras exceptions onto the viewer's error body (never a 500 for bad input)."""
    from workbench_tracker.artifacts import ArtifactInUseError, ArtifactNotFoundError
    from workbench_tracker.exporting import ArchiveError
    from workbench_tracker.remote import (
        HostKeyError,
        RemoteAuthError,
        RemoteConnectError,
        RemoteError,
    )

    try:
        yield
    except UnsafePathError as exc:
        raise _api_error(400, str(exc), exc.field) from exc
    except ArtifactInUseError as exc:
        raise _api_error(409, str(exc), "name") from exc
    except ArtifactNotFoundError as exc:
        raise _api_error(404, str(exc), "name") from exc
    except FileNotFoundError as exc:  # a blob vanished from disk: stored, but not servable
        raise _api_error(410, f"artifact content is missing on the server: {exc}", "name") from exc
    except ArchiveError as exc:
        raise _api_error(400, str(exc), "archive") from exc
    except HostKeyError as exc:
        raise _api_error(403, str(exc), "trust_host_key") from exc
    except RemoteAuthError as exc:
        raise _api_error(401, str(exc), "password") from exc
    except RemoteConnectError as exc:
        raise _api_error(502, str(exc), "target") from exc
    except RemoteError as exc:
        raise _api_error(502, str(exc), None) from exc


def _engine(request: Request) -> Any:
    store = request.app.state.store
    engine = getattr(store, "engine", None)
    if engine is None:
        raise _api_error(
            501, f"artifacts and export need a SQL-backed store, not {type(store).__name__}"
        )
    return engine


def _artifacts(request: Request) -> Any:
    from workbench_tracker.artifacts import ArtifactStore

    root = getattr(request.app.state.store, "artifacts_root", None)
    return ArtifactStore(_engine(request), Path(root) if root else None)


def _project(project: str) -> str:
    if not project or len(project) > 200 or "\x00" in project:
        raise _api_error(400, "project: must be a non-empty string of at most 200 chars", "project")
    return project


# -- artifacts ----------------------------------------------------------------------------------
@router.get("/artifacts")
def list_artifacts(request: Request, project: str | None = None) -> dict[str, Any]:
    """All artifacts (of a project) with version counts and aliases."""
    return {"artifacts": _artifacts(request).list_artifacts(project)}


@router.get("/artifacts/{name}/versions")
def list_versions(request: Request, name: str, project: str = Query(...)) -> dict[str, Any]:
    """Every version of one artifact, oldest first."""
    with _errors():
        versions = _artifacts(request).list_versions(_project(project), validate_name(name))
    return {"versions": [v.to_dict() for v in versions]}


_MAX_ARTIFACT_UPLOAD = 8 * 1024**3


@router.post("/artifacts/{name}/versions")
async def upload_version(
    request: Request,
    name: str,
    project: str = Query(...),
    type: str = Query(..., description="artifact type, e.g. dataset or model"),
    kind: str = Query("dir", description="file or dir"),
    run_id: str | None = None,
    aliases: list[str] = Query(default=[]),
    metadata: str | None = Query(default=None, description="JSON object"),
) -> dict[str, Any]:
    """Log a version from a zip body (what a remote SDK sends for ``run.log_artifact``).

    For ``kind=file`` the zip holds exactly one member: the file. Members are checked for
    traversal before anything is extracted.
    """
    import json as _json
    import zipfile

    import anyio

    if kind not in ("file", "dir"):
        raise _api_error(400, "kind: must be 'file' or 'dir'", "kind")
    try:
        meta = _json.loads(metadata) if metadata else {}
    except ValueError as exc:
        raise _api_error(400, f"metadata: not valid JSON ({exc})", "metadata") from exc
    if not isinstance(meta, dict):
        raise _api_error(400, "metadata: must be a JSON object", "metadata")
    with _errors():
        validate_name(name)
        validate_name(type, "type")
    store = _artifacts(request)
    tmp = tempfile.mkdtemp(prefix="wt-upload-")
    try:
        body = Path(tmp) / "body.zip"
        size = 0
        with body.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > _MAX_ARTIFACT_UPLOAD:
                    raise _api_error(413, "body: artifact larger than 8 GiB", "body")
                fh.write(chunk)
        content = Path(tmp) / "content"
        content.mkdir()
        try:
            with zipfile.ZipFile(body) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if kind == "file" and len(members) != 1:
                    raise _api_error(
                        400, "body: a file artifact zip holds exactly one file", "body"
                    )
                with _errors():
                    for m in members:
                        dest = safe_join(content, m.filename, "body")
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(m) as src, dest.open("wb") as out:
                            shutil.copyfileobj(src, out)
        except zipfile.BadZipFile as exc:
            raise _api_error(400, f"body: not a zip file ({exc})", "body") from exc
        path = content / members[0].filename if kind == "file" else content
        with _errors():
            info = await anyio.to_thread.run_sync(
                lambda: store.log(
                    _project(project),
                    path,
                    name,
                    type,
                    run_id=run_id,
                    metadata=meta,
                    aliases=aliases,
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info.to_dict()


@router.post("/artifacts/{name}/{selector}/use")
def record_use(
    request: Request,
    name: str,
    selector: str,
    project: str = Query(...),
    run_id: str = Query(..., min_length=1, max_length=64),
) -> dict[str, Any]:
    """Record that a run used a version; returns it with its file list (for downloading)."""
    with _errors():
        validate_name(selector, "selector")
        info = _artifacts(request).record_use(
            _project(project), f"{validate_name(name)}:{selector}", run_id
        )
    return info.to_dict()


@router.get("/artifacts/{name}/{selector}")
def get_version(
    request: Request, name: str, selector: str, project: str = Query(...)
) -> dict[str, Any]:
    """One version (``v3`` or an alias) with its file list."""
    with _errors():
        validate_name(selector, "selector")
        info = _artifacts(request).get(
            _project(project), f"{validate_name(name)}:{selector}", files=True
        )
    return info.to_dict()


def _cleanup(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


@router.get("/artifacts/{name}/{selector}/download")
def download(
    request: Request,
    background: BackgroundTasks,
    name: str,
    selector: str,
    project: str = Query(...),
    path: str | None = None,
) -> FileResponse:
    """A file artifact (or one ``path`` inside a directory) as-is; a directory as a zip."""
    with _errors():
        validate_name(selector, "selector")
        store = _artifacts(request)
        ref = f"{validate_name(name)}:{selector}"
        info = store.get(_project(project), ref)
        if info.kind == "file" or path is not None:
            blob, filename = store.file_path(project, ref, path)
            if not blob.is_file():
                raise FileNotFoundError(str(blob))
            return FileResponse(blob, filename=filename, media_type="application/octet-stream")
        tmp = tempfile.mkdtemp(prefix="wt-zip-")
        dest = store.zip_version(project, ref, Path(tmp) / f"{name}-v{info.version}.zip")
    background.add_task(_cleanup, tmp)
    return FileResponse(dest, filename=dest.name, media_type="application/zip")


class AliasBody(BaseModel):
    """Body of ``PUT /api/artifacts/{name}/aliases/{alias}``."""

    version: str = Field(min_length=1, max_length=128, description="v<N> or another alias")


@router.put("/artifacts/{name}/aliases/{alias}")
def set_alias(
    request: Request, name: str, alias: str, body: AliasBody, project: str = Query(...)
) -> dict[str, Any]:
    """Point an alias at a version (moving it if it exists)."""
    with _errors():
        validate_name(body.version, "version")
        info = _artifacts(request).set_alias(
            _project(project), f"{validate_name(name)}:{body.version}", alias
        )
    return info.to_dict()


@router.delete("/artifacts/{name}/aliases/{alias}")
def delete_alias(
    request: Request, name: str, alias: str, project: str = Query(...)
) -> dict[str, Any]:
    """Remove a custom alias."""
    with _errors():
        _artifacts(request).remove_alias(_project(project), validate_name(name), alias)
    return {"deleted": alias}


@router.delete("/artifacts/{name}")
def delete_artifact(
    request: Request, name: str, project: str = Query(...), version: str | None = None
) -> dict[str, Any]:
    """Delete an artifact or one version; 409 while a run used it or a custom alias holds it."""
    with _errors():
        return dict(_artifacts(request).delete(_project(project), validate_name(name), version))


@router.get("/lineage")
def lineage(
    request: Request,
    project: str | None = None,
    run_id: str | None = None,
    artifact: str | None = Query(default=None, description="name[:alias_or_version]"),
) -> dict[str, Any]:
    """The lineage graph (runs and artifact versions), optionally focused on a run/artifact."""
    with _errors():
        if artifact is not None and project is None:
            raise UnsafePathError("project", "is required with artifact")
        return dict(_artifacts(request).lineage(project, run_id=run_id, ref=artifact))


# -- live alerts --------------------------------------------------------------------------------
@router.get("/alerts/stream")
async def alerts_stream(
    request: Request,
    run_id: str | None = None,
    project: str | None = None,
    last_id: int | None = Query(default=None, ge=0),
    poll: float = Query(default=0.5, ge=0.05, le=10),
) -> StreamingResponse:
    """Server-sent events: each new alert (``event: alert``, ``id`` = alert id) as it is stored.

    Monitors in a training process write alerts to the store; this stream polls the store, so
    it pushes alerts live across processes. Reconnecting clients send ``Last-Event-ID``.
    """
    import asyncio

    from workbench_core.sse import encode, encode_comment

    store = request.app.state.store
    header = request.headers.get("last-event-id")
    start = last_id if last_id is not None else int(header) if header and header.isdigit() else None
    if start is None:  # only alerts raised from now on
        existing = await asyncio.to_thread(store.list_alerts, run_id, project=project, limit=1)
        start = existing[0].id if existing else 0

    async def events() -> Any:
        seen = start
        idle = 0.0
        yield encode_comment("alerts")
        while not await request.is_disconnected():
            alerts = await asyncio.to_thread(store.list_alerts, run_id, project=project, limit=1000)
            fresh = sorted((a for a in alerts if a.id > seen), key=lambda a: a.id)
            for a in fresh:
                seen = a.id
                yield encode(a.to_dict(), event="alert", id=str(a.id))
            idle = 0.0 if fresh else idle + poll
            if idle >= 15:
                idle = 0.0
                yield encode_comment("ping")
            await asyncio.sleep(poll)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


# -- export / import ----------------------------------------------------------------------------
def exports_dir() -> Path:
    """Where server-side exports are written: ``WORKBENCH_HOME/exports``."""
    path = workbench_home() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def imports_dir() -> Path:
    """Where server-side imports are read from: ``WORKBENCH_HOME/imports``."""
    path = workbench_home() / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


_MEDIA = {
    "csv": "text/csv",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}


@router.get("/export")
def export_runs_route(
    request: Request,
    background: BackgroundTasks,
    format: str = Query("csv", description="csv, json, parquet or tensorboard (zipped)"),
    project: str | None = None,
    run_id: list[str] = Query(default=[]),
    tag: list[str] = Query(default=[]),
    status: str | None = None,
    key: list[str] = Query(default=[]),
) -> FileResponse:
    """Download a filtered set of runs in one format."""
    from workbench_tracker.exporting import FORMATS, export_runs, load_runs

    if format not in FORMATS:
        raise _api_error(400, f"format: must be one of {', '.join(FORMATS)}", "format")
    runs = load_runs(
        _engine(request),
        project=project,
        run_ids=run_id or None,
        tags=tag,
        status=status,
        keys=key or None,
    )
    if not runs:
        raise _api_error(404, "no runs match the filters", "run_id")
    tmp = tempfile.mkdtemp(prefix="wt-export-")
    background.add_task(_cleanup, tmp)
    if format == "tensorboard":
        export_runs(runs, "tensorboard", Path(tmp) / "tb")
        archive = shutil.make_archive(str(Path(tmp) / "tensorboard"), "zip", Path(tmp) / "tb")
        return FileResponse(archive, filename="tensorboard.zip", media_type="application/zip")
    dest = export_runs(runs, format, Path(tmp) / f"runs.{format}")
    return FileResponse(dest, filename=dest.name, media_type=_MEDIA[format])


@router.get("/export/project")
def export_project_route(
    request: Request, background: BackgroundTasks, project: str = Query(...)
) -> FileResponse:
    """Download a whole project as a portable archive."""
    from workbench_tracker.exporting import export_project

    tmp = tempfile.mkdtemp(prefix="wt-archive-")
    background.add_task(_cleanup, tmp)
    dest = Path(tmp) / "project.zip"
    manifest = export_project(_engine(request), _project(project), dest)
    if not manifest["runs"] and not manifest["counts"]["artifact_versions"]:
        raise _api_error(404, f"project: {project!r} has no runs", "project")
    return FileResponse(
        dest, filename=f"{validate_safe_filename(project)}.zip", media_type="application/zip"
    )


def validate_safe_filename(text: str) -> str:
    """A download filename derived from free text."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:100] or "export"


class ExportToFile(BaseModel):
    """Body of ``POST /api/export/files``: write an export under WORKBENCH_HOME/exports."""

    format: str = Field(description="csv, json, parquet, tensorboard or archive")
    path: str = Field(min_length=1, max_length=1024, description="relative to the exports dir")
    project: str | None = None
    run_ids: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


@router.post("/export/files")
def export_to_file(request: Request, body: ExportToFile) -> dict[str, Any]:
    """Write an export on the server (e.g. for a later ``scp``); the path must stay inside."""
    from workbench_tracker.exporting import FORMATS, export_project, export_runs, load_runs

    with _errors():
        dest = safe_join(exports_dir(), body.path, "path")
    if body.format == "archive":
        if not body.project:
            raise _api_error(400, "project: required for an archive", "project")
        dest.parent.mkdir(parents=True, exist_ok=True)
        manifest = export_project(
            _engine(request), body.project, dest, run_ids=body.run_ids or None
        )
        return {"path": str(dest), "counts": manifest["counts"]}
    if body.format not in FORMATS:
        raise _api_error(400, f"format: must be archive or one of {', '.join(FORMATS)}", "format")
    runs = load_runs(
        _engine(request), project=body.project, run_ids=body.run_ids or None, tags=body.tags
    )
    export_runs(runs, body.format, dest)
    return {"path": str(dest), "runs": len(runs)}


_MAX_UPLOAD = 2 * 1024**3


@router.post("/import")
async def import_archive_route(
    request: Request, project: str | None = None, remap_ids: bool = False
) -> JSONResponse:
    """Import an archive sent as the request body (``application/zip``)."""
    import anyio

    from workbench_tracker.exporting import import_archive

    if project is not None:
        _project(project)
    fd, tmp = tempfile.mkstemp(prefix="wt-import-", suffix=".zip")
    try:
        size = 0
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > _MAX_UPLOAD:
                    raise _api_error(413, "archive: larger than 2 GiB", "archive")
                fh.write(chunk)
        if size == 0:
            raise _api_error(400, "archive: the request body is empty", "archive")
        with _errors():
            result = await anyio.to_thread.run_sync(
                lambda: import_archive(
                    _engine(request), Path(tmp), project=project, remap_ids=remap_ids
                )
            )
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return JSONResponse(result)


class TensorBoardImport(BaseModel):
    """Body of ``POST /api/import/tensorboard``."""

    logdir: str = Field(min_length=1, max_length=1024, description="relative to imports dir")
    project: str = Field(min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list)


@router.post("/import/tensorboard")
def import_tensorboard_route(request: Request, body: TensorBoardImport) -> dict[str, Any]:
    """Import TensorBoard logs from under ``WORKBENCH_HOME/imports`` as runs."""
    from workbench_tracker.exporting import import_tensorboard

    with _errors():
        logdir = safe_join(imports_dir(), body.logdir, "logdir")
    if not logdir.is_dir():
        raise _api_error(404, f"logdir: {body.logdir!r} is not a directory", "logdir")
    return import_tensorboard(_engine(request), logdir, body.project, tags=body.tags)


# -- remote -------------------------------------------------------------------------------------
def ssh_dir() -> Path:
    """Directory holding identities and known_hosts for API connections (``~/.ssh``).

    ``WORKBENCH_SSH_DIR`` overrides it. Identities given to the API are names inside it, so the
    API can never be used to read an arbitrary file as a "key".
    """
    return Path(os.environ.get("WORKBENCH_SSH_DIR") or Path.home() / ".ssh").expanduser()


class RemoteConnect(BaseModel):
    """Body of ``POST /api/remote/sessions``."""

    target: str = Field(min_length=1, max_length=300, description="user@host[:port]")
    port: int | None = Field(default=None, ge=1, le=65535)
    identity: str | None = Field(default=None, description="key file name inside ~/.ssh")
    password: str | None = Field(default=None, repr=False)
    passphrase: str | None = Field(default=None, repr=False)
    save_password: bool = False
    trust_host_key: bool | str = False
    python: str | None = Field(default=None, max_length=1024)
    remote_home: str | None = Field(default=None, max_length=1024)
    use_agent: bool = True


def _record(session: Any) -> dict[str, Any]:
    return dict(session.record.to_dict())


@router.get("/remote/sessions")
def remote_sessions() -> dict[str, Any]:
    """Registered remote sessions (from every local process)."""
    from workbench_tracker.remote import list_sessions

    return {"sessions": [s.to_dict() for s in list_sessions()]}


@router.post("/remote/sessions")
def remote_connect(body: RemoteConnect) -> dict[str, Any]:
    """Connect over SSH, start the remote viewer, open a local tunnel to it."""
    from workbench_tracker.remote import SSHTarget, parse_target, start_session

    try:
        user, host, port = parse_target(body.target, body.port)
    except ValueError as exc:
        raise _api_error(400, str(exc), str(exc).split(":", 1)[0]) from exc
    with _errors():
        identity = str(safe_join(ssh_dir(), body.identity, "identity")) if body.identity else None
        if identity is not None and not Path(identity).is_file():
            raise UnsafePathError("identity", f"{body.identity!r} is not a file in {ssh_dir()}")
        target = SSHTarget(
            host=host,
            user=user,
            port=port,
            identity=identity,
            password=body.password,
            passphrase=body.passphrase,
            use_agent=body.use_agent,
            known_hosts=ssh_dir() / "known_hosts",
            trust_host_key=body.trust_host_key,
            save_password=body.save_password,
        )
        session = start_session(target, python=body.python, remote_home=body.remote_home)
    return _record(session)


@router.delete("/remote/sessions/{session_id}")
def remote_stop(session_id: str) -> dict[str, Any]:
    """Stop a session: the remote viewer is killed and the tunnel closed."""
    from workbench_tracker.remote import stop_session

    with _errors():
        try:
            stopped = stop_session(session_id)
        except KeyError as exc:
            raise _api_error(404, f"session_id: {session_id!r} not found", "session_id") from exc
    return {"stopped": stopped, "id": session_id}


@router.get("/remote/sessions/{session_id}/files")
def remote_files(session_id: str, path: str = "") -> dict[str, Any]:
    """List files under the remote WORKBENCH_HOME (only for sessions this viewer owns)."""
    from workbench_tracker.remote import get_active_session

    with _errors():
        validate_name(session_id, "session_id")
        session = get_active_session(session_id)
        if session is None:
            raise _api_error(
                404, f"session_id: {session_id!r} is not owned by this viewer", "session_id"
            )
        return {"path": path, "entries": session.list_files(path)}
