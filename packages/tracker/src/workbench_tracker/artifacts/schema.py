"""SQLAlchemy tables for artifacts, their versions, aliases, blobs and lineage edges.

The tables hang off the tracker store's declarative ``Base`` so one ``create_all`` builds the
whole schema. Run ids are stored as plain strings without a foreign key to ``runs``: an artifact
must survive when the run that produced it is deleted (lineage then shows a dangling run id), and
an imported archive may bring artifacts before their runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

try:  # the tracker core's Base, so its create_all covers these tables too
    from workbench_tracker.store.schema import Base
except ImportError:  # pragma: no cover - only before the core store exists

    class Base(DeclarativeBase):  # type: ignore[no-redef]
        """Fallback base used when the tracker store schema is not importable."""


__all__ = [
    "ARTIFACT_TABLES",
    "Artifact",
    "ArtifactAlias",
    "ArtifactBlob",
    "ArtifactFile",
    "ArtifactVersion",
    "Base",
    "LineageEdge",
]


def _now() -> datetime:
    return datetime.now(UTC)


class ArtifactBlob(Base):
    """One content-addressed blob on disk; shared by every file with the same bytes."""

    __tablename__ = "artifact_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Artifact(Base):
    """A named, typed artifact within a project (e.g. ``dataset`` ``mnist``)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_artifact_project_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ArtifactVersion(Base):
    """Version ``v<N>`` of an artifact: a manifest of files identified by its digest."""

    __tablename__ = "artifact_versions"
    __table_args__ = (
        UniqueConstraint("artifact_id", "version", name="uq_artifact_version"),
        UniqueConstraint("artifact_id", "digest", name="uq_artifact_digest"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))  # "file" or "dir"
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_by_run: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ArtifactFile(Base):
    """One file of a version: relative path -> blob."""

    __tablename__ = "artifact_files"
    __table_args__ = (UniqueConstraint("version_id", "path", name="uq_artifact_file_path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("artifact_versions.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(ForeignKey("artifact_blobs.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class ArtifactAlias(Base):
    """A movable name (``latest``, ``best``, ...) pointing at one version of an artifact."""

    __tablename__ = "artifact_aliases"
    __table_args__ = (UniqueConstraint("artifact_id", "alias", name="uq_artifact_alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = mapped_column(ForeignKey("artifact_versions.id", ondelete="CASCADE"))


class LineageEdge(Base):
    """A run produced or used an artifact version."""

    __tablename__ = "artifact_lineage"
    __table_args__ = (
        UniqueConstraint("run_id", "version_id", "direction", name="uq_lineage_edge"),
        Index("ix_lineage_version", "version_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("artifact_versions.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))  # "produced" or "used"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


ARTIFACT_TABLES = [
    ArtifactBlob.__table__,
    Artifact.__table__,
    ArtifactVersion.__table__,
    ArtifactFile.__table__,
    ArtifactAlias.__table__,
    LineageEdge.__table__,
]
