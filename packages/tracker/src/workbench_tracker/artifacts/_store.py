"""Content-addressed, versioned artifacts with aliases and lineage.

Layout under the artifact root (default ``WORKBENCH_HOME/artifacts``)::

    blobs/ab/abcdef...       one file per distinct sha256 (deduplicated across all artifacts)
    materialized/<project>/<name>/v<N>/...   copies handed out by use_artifact()

A version's *digest* is the sha256 of its sorted manifest (path + blob sha per file), so logging
the same bytes again yields the same digest and no new version. ``latest`` always points at the
version most recently logged.

Delete rules (the API answers 409 when refused):

* an artifact version may be deleted only when no run has *used* it and no alias other than
  ``latest`` points at it; deleting the version ``latest`` points at moves ``latest`` to the
  highest remaining version;
* a whole artifact may be deleted only when every one of its versions may be.

"Produced by" edges never block deletion: the producing run's history is not a consumer.
Blobs no longer referenced by any file are removed from disk after a delete.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
import weakref
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.orm import Session

from workbench_tracker.artifacts.schema import (
    ARTIFACT_TABLES,
    Artifact,
    ArtifactAlias,
    ArtifactBlob,
    ArtifactFile,
    ArtifactVersion,
    Base,
    LineageEdge,
)
from workbench_tracker.paths import (
    UnsafePathError,
    safe_join,
    validate_name,
    validate_relative_path,
    workbench_home,
)

__all__ = [
    "ArtifactError",
    "ArtifactInUseError",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ArtifactVersionInfo",
    "parse_ref",
]

_VERSION_RE = re.compile(r"^v(\d+)$")
_CHUNK = 1 << 20
_SCHEMA_READY: weakref.WeakSet[Engine] = weakref.WeakSet()


class ArtifactError(Exception):
    """Base of artifact errors.

    ArtifactError
     +-- ArtifactNotFoundError   (404)
     +-- ArtifactInUseError      (409)
    """


class ArtifactNotFoundError(ArtifactError, LookupError):
    """No artifact, version or alias by that name."""


class ArtifactInUseError(ArtifactError):
    """Deletion refused because something still references the artifact.

    Attributes:
        reasons: human-readable references that block deletion.
    """

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


@dataclass
class ArtifactVersionInfo:
    """One artifact version as the SDK, API and UI see it."""

    project: str
    name: str
    type: str
    version: int
    digest: str
    kind: str
    size: int
    file_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    created_by_run: str | None = None
    created_at: str | None = None
    files: list[dict[str, Any]] | None = None

    @property
    def ref(self) -> str:
        """``name:v<N>``, usable with use_artifact()."""
        return f"{self.name}:v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (adds ``ref`` and the ``v<N>`` label)."""
        data = asdict(self)
        data["ref"] = self.ref
        data["label"] = f"v{self.version}"
        return data


def parse_ref(ref: str, field_name: str = "ref") -> tuple[str, str]:
    """Split ``name[:alias_or_version]``; a bare name means ``latest``.

    Raises:
        UnsafePathError: when the name or alias is malformed (it becomes a path and a URL).
    """
    if not isinstance(ref, str) or not ref:
        raise UnsafePathError(field_name, "must be 'name' or 'name:alias_or_version'")
    name, _, selector = ref.partition(":")
    validate_name(name, field_name)
    selector = selector or "latest"
    validate_name(selector, field_name)
    return name, selector


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _dir_token(value: str) -> str:
    """A filesystem-safe directory name for a project (projects are free-form strings)."""
    if re.match(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,100}$", value) and value not in (".", ".."):
        return value
    return "p-" + hashlib.sha256(value.encode()).hexdigest()[:16]


class ArtifactStore:
    """Artifact operations over the tracker's SQLAlchemy engine and a blob directory.

    Args:
        engine: the tracker store's engine (SQLite by default); artifact tables are created on it.
        root: blob and materialisation root; defaults to ``WORKBENCH_HOME/artifacts``.
    """

    def __init__(self, engine: Engine, root: Path | None = None) -> None:
        self.engine = engine
        self.root = Path(root) if root is not None else workbench_home() / "artifacts"
        self.ensure_schema()

    # ------------------------------------------------------------------ schema / blobs
    def ensure_schema(self) -> None:
        """Create the artifact tables if missing (idempotent, once per engine)."""
        if self.engine in _SCHEMA_READY:
            return
        Base.metadata.create_all(self.engine, tables=ARTIFACT_TABLES)  # type: ignore[arg-type]
        _SCHEMA_READY.add(self.engine)

    def blob_path(self, sha: str) -> Path:
        """Where the blob with this sha256 lives on disk."""
        return self.root / "blobs" / sha[:2] / sha

    def _store_blob(self, src: Path) -> tuple[str, int]:
        """Copy ``src`` into the blob store once; return (sha256, size).

        Content already stored costs one read (the hash); new content is hashed again while it
        is copied, so a file that changed in between is caught without a third pass.
        """
        sha, size = _hash_file(src)
        dest = self.blob_path(sha)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            try:
                h = hashlib.sha256()
                with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
                    while chunk := fin.read(_CHUNK):
                        h.update(chunk)
                        fout.write(chunk)
                if h.hexdigest() != sha:
                    raise ArtifactError(f"{src} changed while being logged; try again")
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return sha, size

    @staticmethod
    def _collect(path: Path) -> tuple[str, list[tuple[str, Path]]]:
        if path.is_symlink() and not path.exists():
            raise FileNotFoundError(f"{path} is a dangling symlink")
        if path.is_file():
            return "file", [(path.name, path)]
        if path.is_dir():
            files: list[tuple[str, Path]] = []
            root = path.resolve()
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames.sort()
                for fname in sorted(filenames):
                    full = Path(dirpath) / fname
                    if full.is_symlink():
                        target = full.resolve()
                        # A symlink out of the logged directory would smuggle foreign files in.
                        if root not in target.parents or not target.is_file():
                            continue
                    files.append((full.relative_to(root).as_posix(), full))
            return "dir", files
        raise FileNotFoundError(f"{path} does not exist")

    # ------------------------------------------------------------------ helpers
    def _artifact(self, s: Session, project: str, name: str) -> Artifact:
        art = s.scalar(select(Artifact).where(Artifact.project == project, Artifact.name == name))
        if art is None:
            raise ArtifactNotFoundError(f"artifact {name!r} not found in project {project!r}")
        return art

    def _resolve(self, s: Session, art: Artifact, selector: str) -> ArtifactVersion:
        m = _VERSION_RE.match(selector)
        if m:
            ver = s.scalar(
                select(ArtifactVersion).where(
                    ArtifactVersion.artifact_id == art.id,
                    ArtifactVersion.version == int(m.group(1)),
                )
            )
        else:
            ver = s.scalar(
                select(ArtifactVersion)
                .join(ArtifactAlias, ArtifactAlias.version_id == ArtifactVersion.id)
                .where(ArtifactAlias.artifact_id == art.id, ArtifactAlias.alias == selector)
            )
        if ver is None:
            raise ArtifactNotFoundError(
                f"artifact {art.name!r} has no version or alias {selector!r}"
            )
        return ver

    def _aliases(self, s: Session, version_id: int) -> list[str]:
        rows = s.scalars(
            select(ArtifactAlias.alias).where(ArtifactAlias.version_id == version_id)
        ).all()
        return sorted(rows)

    def _info(
        self, s: Session, art: Artifact, ver: ArtifactVersion, files: bool = False
    ) -> ArtifactVersionInfo:
        info = ArtifactVersionInfo(
            project=art.project,
            name=art.name,
            type=art.type,
            version=ver.version,
            digest=ver.digest,
            kind=ver.kind,
            size=ver.size,
            file_count=ver.file_count,
            metadata=dict(ver.meta or {}),
            aliases=self._aliases(s, ver.id),
            created_by_run=ver.created_by_run,
            created_at=_iso(ver.created_at),
        )
        if files:
            rows = s.scalars(
                select(ArtifactFile)
                .where(ArtifactFile.version_id == ver.id)
                .order_by(ArtifactFile.path)
            ).all()
            info.files = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in rows]
        return info

    def _set_alias(self, s: Session, art: Artifact, alias: str, ver: ArtifactVersion) -> None:
        row = s.scalar(
            select(ArtifactAlias).where(
                ArtifactAlias.artifact_id == art.id, ArtifactAlias.alias == alias
            )
        )
        if row is None:
            s.add(ArtifactAlias(artifact_id=art.id, alias=alias, version_id=ver.id))
        else:
            row.version_id = ver.id

    @staticmethod
    def _check_alias(alias: str, field_name: str = "alias") -> str:
        validate_name(alias, field_name)
        if _VERSION_RE.match(alias):
            raise UnsafePathError(field_name, f"{alias!r} looks like a version; pick another alias")
        return alias

    # ------------------------------------------------------------------ public API
    def log(
        self,
        project: str,
        path: str | os.PathLike[str],
        name: str,
        type: str,
        *,
        run_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Iterable[str] | None = None,
    ) -> ArtifactVersionInfo:
        """Store a file or directory as a new version of ``name`` (or reuse identical content).

        Returns:
            The version now pointed at by ``latest`` (and the given aliases).
        """
        validate_name(name, "name")
        validate_name(type, "type")
        alias_list = [self._check_alias(a, "aliases") for a in (aliases or [])]
        src = Path(path)
        kind, files = self._collect(src)
        manifest: list[tuple[str, str, int]] = []
        for rel, full in files:
            sha, size = self._store_blob(full)
            manifest.append((rel, sha, size))
        h = hashlib.sha256(kind.encode())
        for rel, sha, _ in manifest:
            h.update(f"\n{rel}\0{sha}".encode())
        digest = h.hexdigest()
        with Session(self.engine) as s, s.begin():
            art = s.scalar(
                select(Artifact).where(Artifact.project == project, Artifact.name == name)
            )
            if art is None:
                art = Artifact(project=project, name=name, type=type)
                s.add(art)
                s.flush()
            ver = s.scalar(
                select(ArtifactVersion).where(
                    ArtifactVersion.artifact_id == art.id, ArtifactVersion.digest == digest
                )
            )
            if ver is None:
                sizes = {sha: size for _, sha, size in manifest}
                known: set[str] = set()
                shas = list(sizes)
                for i in range(0, len(shas), 500):  # bounded IN lists
                    known.update(
                        s.scalars(
                            select(ArtifactBlob.sha256).where(
                                ArtifactBlob.sha256.in_(shas[i : i + 500])
                            )
                        ).all()
                    )
                missing = [{"sha256": k, "size": v} for k, v in sizes.items() if k not in known]
                if missing:
                    s.execute(insert(ArtifactBlob), missing)
                last = s.scalar(
                    select(func.max(ArtifactVersion.version)).where(
                        ArtifactVersion.artifact_id == art.id
                    )
                )
                ver = ArtifactVersion(
                    artifact_id=art.id,
                    version=0 if last is None else last + 1,
                    digest=digest,
                    kind=kind,
                    size=sum(m[2] for m in manifest),
                    file_count=len(manifest),
                    meta=dict(metadata or {}),
                    created_by_run=run_id,
                )
                s.add(ver)
                s.flush()
                if manifest:
                    s.execute(
                        insert(ArtifactFile),
                        [
                            {"version_id": ver.id, "path": rel, "sha256": sha, "size": size}
                            for rel, sha, size in manifest
                        ],
                    )
            elif metadata:
                ver.meta = {**(ver.meta or {}), **metadata}
            for alias in ["latest", *alias_list]:
                self._set_alias(s, art, alias, ver)
            if run_id is not None:
                self._add_edge(s, run_id, ver.id, "produced")
            s.flush()
            return self._info(s, art, ver)

    def _add_edge(self, s: Session, run_id: str, version_id: int, direction: str) -> None:
        exists = s.scalar(
            select(LineageEdge.id).where(
                LineageEdge.run_id == run_id,
                LineageEdge.version_id == version_id,
                LineageEdge.direction == direction,
            )
        )
        if exists is None:
            s.add(LineageEdge(run_id=run_id, version_id=version_id, direction=direction))

    def get(self, project: str, ref: str, *, files: bool = False) -> ArtifactVersionInfo:
        """Describe the version ``ref`` (``name``, ``name:alias`` or ``name:v3``) points at."""
        name, selector = parse_ref(ref)
        with Session(self.engine) as s:
            art = self._artifact(s, project, name)
            return self._info(s, art, self._resolve(s, art, selector), files=files)

    def use(self, project: str, ref: str, *, run_id: str | None = None) -> Path:
        """Record that ``run_id`` used ``ref`` and return a local copy of its content.

        Returns:
            For a file artifact, the path of the file; for a directory, the directory.
        """
        name, selector = parse_ref(ref)
        with Session(self.engine) as s, s.begin():
            art = self._artifact(s, project, name)
            ver = self._resolve(s, art, selector)
            if run_id is not None:
                self._add_edge(s, run_id, ver.id, "used")
            rows = s.scalars(select(ArtifactFile).where(ArtifactFile.version_id == ver.id)).all()
            files = [(f.path, f.sha256) for f in rows]
            kind, version, digest = ver.kind, ver.version, ver.digest
        target = self.root / "materialized" / _dir_token(project) / name / f"v{version}"
        # The marker sits beside the copy, so the user's directory holds only their files.
        marker = target.with_name(f".v{version}.digest")
        if not (marker.exists() and marker.read_text() == digest):
            tmp = target.with_name(f".tmp-{uuid.uuid4().hex}")
            for rel, sha in files:
                dest = safe_join(tmp, rel, "path") if rel else tmp
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.blob_path(sha), dest)
            tmp.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, target)
            except OSError:  # another process materialised it first
                shutil.rmtree(tmp, ignore_errors=True)
            marker.write_text(digest)
        if kind == "file" and files:
            return target / files[0][0]
        return target

    def record_use(self, project: str, ref: str, run_id: str) -> ArtifactVersionInfo:
        """Record that ``run_id`` used ``ref`` without materialising it here (remote SDKs
        download the content themselves)."""
        name, selector = parse_ref(ref)
        with Session(self.engine) as s, s.begin():
            art = self._artifact(s, project, name)
            ver = self._resolve(s, art, selector)
            self._add_edge(s, run_id, ver.id, "used")
            s.flush()
            return self._info(s, art, ver, files=True)

    def list_artifacts(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every artifact (optionally of one project) with its version count and aliases."""
        with Session(self.engine) as s:
            q = select(Artifact).order_by(Artifact.project, Artifact.name)
            if project is not None:
                q = q.where(Artifact.project == project)
            out = []
            for art in s.scalars(q).all():
                count = s.scalar(
                    select(func.count(ArtifactVersion.id)).where(
                        ArtifactVersion.artifact_id == art.id
                    )
                )
                aliases = s.execute(
                    select(ArtifactAlias.alias, ArtifactVersion.version)
                    .join(ArtifactVersion, ArtifactVersion.id == ArtifactAlias.version_id)
                    .where(ArtifactAlias.artifact_id == art.id)
                ).all()
                out.append(
                    {
                        "project": art.project,
                        "name": art.name,
                        "type": art.type,
                        "versions": count or 0,
                        "aliases": {a: f"v{v}" for a, v in sorted(aliases)},
                        "created_at": _iso(art.created_at),
                    }
                )
            return out

    def list_versions(self, project: str, name: str) -> list[ArtifactVersionInfo]:
        """All versions of one artifact, oldest first."""
        validate_name(name, "name")
        with Session(self.engine) as s:
            art = self._artifact(s, project, name)
            vers = s.scalars(
                select(ArtifactVersion)
                .where(ArtifactVersion.artifact_id == art.id)
                .order_by(ArtifactVersion.version)
            ).all()
            return [self._info(s, art, v) for v in vers]

    def set_alias(self, project: str, ref: str, alias: str) -> ArtifactVersionInfo:
        """Point ``alias`` of the artifact at the version ``ref`` resolves to (moving it)."""
        name, selector = parse_ref(ref)
        self._check_alias(alias)
        with Session(self.engine) as s, s.begin():
            art = self._artifact(s, project, name)
            ver = self._resolve(s, art, selector)
            self._set_alias(s, art, alias, ver)
            s.flush()
            return self._info(s, art, ver)

    def remove_alias(self, project: str, name: str, alias: str) -> None:
        """Remove a custom alias; ``latest`` is managed by the store and cannot be removed."""
        validate_name(name, "name")
        self._check_alias(alias)
        if alias == "latest":
            raise UnsafePathError("alias", "'latest' is maintained automatically")
        with Session(self.engine) as s, s.begin():
            art = self._artifact(s, project, name)
            res = s.execute(
                delete(ArtifactAlias).where(
                    ArtifactAlias.artifact_id == art.id, ArtifactAlias.alias == alias
                )
            )
            if getattr(res, "rowcount", 0) == 0:
                raise ArtifactNotFoundError(f"artifact {name!r} has no alias {alias!r}")

    def _blockers(self, s: Session, ver: ArtifactVersion) -> list[str]:
        reasons = []
        for (run_id,) in s.execute(
            select(LineageEdge.run_id).where(
                LineageEdge.version_id == ver.id, LineageEdge.direction == "used"
            )
        ).all():
            reasons.append(f"v{ver.version} is used by run {run_id}")
        for alias in self._aliases(s, ver.id):
            if alias != "latest":
                reasons.append(f"v{ver.version} has alias {alias!r}")
        return reasons

    def delete(self, project: str, name: str, version: str | None = None) -> dict[str, Any]:
        """Delete one version (``"v2"``) or the whole artifact, unless referenced.

        Raises:
            ArtifactInUseError: when a run used it or a custom alias points at it.
        """
        validate_name(name, "name")
        with Session(self.engine) as s, s.begin():
            art = self._artifact(s, project, name)
            if version is not None:
                validate_name(version, "version")
                if not _VERSION_RE.match(version):
                    raise UnsafePathError("version", f"{version!r} is not of the form v<N>")
                targets = [self._resolve(s, art, version)]
            else:
                targets = list(
                    s.scalars(
                        select(ArtifactVersion).where(ArtifactVersion.artifact_id == art.id)
                    ).all()
                )
            reasons = [r for v in targets for r in self._blockers(s, v)]
            if reasons:
                raise ArtifactInUseError(
                    f"artifact {name!r} is still referenced: " + "; ".join(reasons), reasons
                )
            ids = [v.id for v in targets]
            s.execute(delete(ArtifactAlias).where(ArtifactAlias.version_id.in_(ids)))
            s.execute(delete(LineageEdge).where(LineageEdge.version_id.in_(ids)))
            s.execute(delete(ArtifactFile).where(ArtifactFile.version_id.in_(ids)))
            s.execute(delete(ArtifactVersion).where(ArtifactVersion.id.in_(ids)))
            removed = [f"v{v.version}" for v in targets]
            remaining = s.scalars(
                select(ArtifactVersion)
                .where(ArtifactVersion.artifact_id == art.id)
                .order_by(ArtifactVersion.version.desc())
            ).first()
            if remaining is None:
                s.delete(art)
            else:
                self._set_alias(s, art, "latest", remaining)
            orphans = s.scalars(
                select(ArtifactBlob.sha256).where(
                    ~select(ArtifactFile.id)
                    .where(ArtifactFile.sha256 == ArtifactBlob.sha256)
                    .exists()
                )
            ).all()
            s.execute(delete(ArtifactBlob).where(ArtifactBlob.sha256.in_(orphans)))
        for sha in orphans:
            self.blob_path(sha).unlink(missing_ok=True)
        mat = self.root / "materialized" / _dir_token(project) / name
        for label in removed:
            shutil.rmtree(mat / label, ignore_errors=True)
        return {"deleted": removed, "blobs_removed": len(orphans)}

    def lineage(
        self, project: str | None = None, *, run_id: str | None = None, ref: str | None = None
    ) -> dict[str, Any]:
        """The lineage graph: run and artifact-version nodes, produced/used edges.

        With ``run_id`` or ``ref`` the graph is restricted to the connected component that
        contains that node, so the UI can focus on one run or artifact.
        """
        with Session(self.engine) as s:
            q = (
                select(LineageEdge, ArtifactVersion, Artifact)
                .join(ArtifactVersion, ArtifactVersion.id == LineageEdge.version_id)
                .join(Artifact, Artifact.id == ArtifactVersion.artifact_id)
            )
            if project is not None:
                q = q.where(Artifact.project == project)
            rows = s.execute(q).all()
            nodes: dict[str, dict[str, Any]] = {}
            edges: list[dict[str, str]] = []
            for edge, ver, art in rows:
                rnode = f"run:{edge.run_id}"
                anode = f"artifact:{art.name}:v{ver.version}"
                nodes.setdefault(rnode, {"id": rnode, "kind": "run", "run_id": edge.run_id})
                nodes.setdefault(
                    anode,
                    {
                        "id": anode,
                        "kind": "artifact",
                        "name": art.name,
                        "type": art.type,
                        "version": f"v{ver.version}",
                        "aliases": self._aliases(s, ver.id),
                    },
                )
                if edge.direction == "produced":
                    edges.append({"source": rnode, "target": anode, "kind": "produced"})
                else:
                    edges.append({"source": anode, "target": rnode, "kind": "used"})
            run_ids = [n["run_id"] for n in nodes.values() if n["kind"] == "run"]
            for rid, rname, rstatus in self._run_names(s, run_ids):
                nodes[f"run:{rid}"].update(name=rname, status=rstatus)
            focus: str | None = None
            if run_id is not None:
                focus = f"run:{run_id}"
            elif ref is not None:
                name, selector = parse_ref(ref)
                if project is None:
                    raise ArtifactNotFoundError("a project is needed to focus on an artifact")
                art = self._artifact(s, project, name)
                focus = f"artifact:{name}:v{self._resolve(s, art, selector).version}"
        if focus is not None:
            adj: dict[str, set[str]] = {}
            for e in edges:
                adj.setdefault(e["source"], set()).add(e["target"])
                adj.setdefault(e["target"], set()).add(e["source"])
            seen = {focus}
            stack = [focus]
            while stack:
                for nxt in adj.get(stack.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            nodes = {k: v for k, v in nodes.items() if k in seen}
            edges = [e for e in edges if e["source"] in seen]
        return {"nodes": list(nodes.values()), "edges": edges}

    @staticmethod
    def _run_names(s: Session, run_ids: list[str]) -> list[tuple[str, str, str]]:
        """(id, name, status) of the runs the tracker store knows (artifacts may outlive runs)."""
        if not run_ids:
            return []
        try:
            from workbench_tracker.store.schema import Run
        except ImportError:  # pragma: no cover - the core schema always ships with extras
            return []
        out: list[tuple[str, str, str]] = []
        for i in range(0, len(run_ids), 500):
            out += [
                (r.id, r.name, r.status)
                for r in s.execute(
                    select(Run.id, Run.name, Run.status).where(Run.id.in_(run_ids[i : i + 500]))
                ).all()
            ]
        return out

    def file_path(self, project: str, ref: str, path: str | None = None) -> tuple[Path, str]:
        """Resolve one file of a version to its blob on disk and its download name.

        Raises:
            UnsafePathError: when ``path`` tries to leave the artifact.
            ArtifactNotFoundError: when the file is not part of the version.
        """
        info = self.get(project, ref, files=True)
        files = info.files or []
        if path is None:
            if info.kind != "file":
                raise UnsafePathError("path", "this artifact is a directory; name a file in it")
            entry = files[0]
        else:
            rel = validate_relative_path(path, "path").as_posix()
            found = [f for f in files if f["path"] == rel]
            if not found:
                raise ArtifactNotFoundError(f"{ref} has no file {rel!r}")
            entry = found[0]
        return self.blob_path(entry["sha256"]), Path(entry["path"]).name

    def zip_version(self, project: str, ref: str, dest: Path) -> Path:
        """Write the version's files into a zip at ``dest`` (for downloading a directory)."""
        info = self.get(project, ref, files=True)
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in info.files or []:
                zf.write(self.blob_path(f["sha256"]), arcname=f["path"])
        return dest

    def export_rows(self, project: str) -> list[dict[str, Any]]:
        """Everything needed to rebuild a project's artifacts elsewhere (for archives)."""
        out = []
        for art in self.list_artifacts(project):
            for v in self.list_versions(project, art["name"]):
                full = self.get(project, f"{art['name']}:v{v.version}", files=True)
                out.append(full.to_dict())
        with Session(self.engine) as s:
            edges = s.execute(
                select(
                    LineageEdge.run_id,
                    LineageEdge.direction,
                    Artifact.name,
                    ArtifactVersion.version,
                )
                .join(ArtifactVersion, ArtifactVersion.id == LineageEdge.version_id)
                .join(Artifact, Artifact.id == ArtifactVersion.artifact_id)
                .where(Artifact.project == project)
            ).all()
        for row in out:
            row["lineage"] = [
                {"run_id": r, "direction": d}
                for r, d, n, v in edges
                if n == row["name"] and v == row["version"]
            ]
        return out

    def import_version(
        self,
        project: str,
        row: dict[str, Any],
        blob_dir: Path,
        run_id_map: dict[str, str] | None = None,
    ) -> None:
        """Recreate one exported version from its manifest and blobs (idempotent by digest)."""
        run_id_map = run_id_map or {}
        name = validate_name(str(row["name"]), "name")
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "content"
            files = row.get("files") or []
            if row.get("kind") == "file" and files:
                validate_name(Path(files[0]["path"]).name, "files.path")
                src = Path(tmp) / files[0]["path"]
                shutil.copyfile(safe_join(blob_dir, files[0]["sha256"], "sha256"), src)
            else:
                src.mkdir()
                for f in files:
                    dest = safe_join(src, f["path"], "files.path")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(safe_join(blob_dir, f["sha256"], "sha256"), dest)
            producer = row.get("created_by_run")
            info = self.log(
                project,
                src,
                name,
                str(row["type"]),
                run_id=run_id_map.get(producer, producer) if producer else None,
                metadata=row.get("metadata") or {},
                aliases=[a for a in row.get("aliases", []) if a != "latest"],
            )
        with Session(self.engine) as s, s.begin():
            art = self._artifact(s, project, name)
            ver = self._resolve(s, art, f"v{info.version}")
            for e in row.get("lineage", []):
                rid = run_id_map.get(e["run_id"], e["run_id"])
                self._add_edge(s, rid, ver.id, e["direction"])
