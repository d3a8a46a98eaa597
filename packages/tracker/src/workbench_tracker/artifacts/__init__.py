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
    """
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
    """Record that ``run`` used ``name:alias_or_version`` and return its local path."""
    return artifact_store_for(run).use(str(run.project), ref, run_id=str(run.id))
