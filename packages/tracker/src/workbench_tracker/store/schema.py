"""The tracker's SQLAlchemy schema: one declarative ``Base`` for every tracker table.

Other tracker modules (artifacts, lineage, system metrics) declare their tables on this same
``Base`` so a single ``create_all`` builds the whole database, on SQLite and PostgreSQL alike.

Design notes (why, not what):

- ``metrics`` is the hot table. Rows carry no foreign key (a FK check per row costs insert
  throughput, and the writer thread is the only producer); the composite index
  ``(run_id, key, step)`` serves every read the viewer makes (one key's series, a step range, the
  newest points after a step).
- ``value`` is a double. NaN is stored as SQL NULL on SQLite (SQLite turns a bound NaN into NULL
  anyway) and as ``'NaN'`` on PostgreSQL; every read maps NULL back to NaN, so NaN round-trips
  faithfully everywhere. +/-Inf are stored as themselves on both.
- ``metric_keys`` is a tiny per-(run, key) summary kept up to date by the writer (count, last step,
  last value). It makes "which keys does this run have" and "has anything new arrived" O(keys)
  instead of a scan over millions of metric rows, which the live WebSocket polls often.
- ``run_tags`` duplicates ``runs.tags`` in a queryable form: tag filters then run in SQL on both
  dialects without JSON operators.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "BLOCK_STEPS",
    "Alert",
    "Base",
    "Media",
    "Metric",
    "MetricBlock",
    "MetricKey",
    "Project",
    "Run",
    "RunTag",
]

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; BIGINT elsewhere.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base shared by every tracker table (core and extras)."""


class Project(Base):
    """A project groups runs; created implicitly by the first run that names it."""

    __tablename__ = "projects"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Run(Base):
    """One execution of a script: its config, summary, status and captured environment."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_project_created", "project", "created_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)


class RunTag(Base):
    """One tag of one run, so tag filters are plain indexed SQL on every dialect."""

    __tablename__ = "run_tags"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class Metric(Base):
    """One scalar point: (run, key, step) -> value at a wall-clock time (unix seconds)."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_key_step", "run_id", "key", "step"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(256))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double, nullable=True)
    wall_time: Mapped[float] = mapped_column(Double)


class MetricKey(Base):
    """Per-(run, key) summary maintained by the writer: count, last step and value."""

    __tablename__ = "metric_keys"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    last_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    updated_at: Mapped[float] = mapped_column(Double, default=0.0)


BLOCK_STEPS = 256
"""Steps per ``metric_blocks`` row (a block covers steps [b * 256, b * 256 + 255])."""


class MetricBlock(Base):
    """A summary of one key's points in a range of ``BLOCK_STEPS`` steps, kept by the writer.

    First, last, min and max are real logged points (step and value), so a downsampled read of
    a long series can pick its candidates from ~4 points per block instead of scanning every
    row: a million points become ~16k candidates read from ~4k rows. NaN values are counted,
    not summarised; a block with NaNs has them fetched by step range at read time.
    """

    __tablename__ = "metric_blocks"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    nan_count: Mapped[int] = mapped_column(BigInteger, default=0)
    first_step: Mapped[int] = mapped_column(BigInteger)
    first_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    first_time: Mapped[float] = mapped_column(Double)
    last_step: Mapped[int] = mapped_column(BigInteger)
    last_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    last_time: Mapped[float] = mapped_column(Double)
    min_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    min_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    max_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_value: Mapped[float | None] = mapped_column(Double, nullable=True)


class Media(Base):
    """An image (PNG/JPEG bytes) logged by a run at a step."""

    __tablename__ = "media"
    __table_args__ = (Index("ix_media_run_key_step", "run_id", "key", "step"),)
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(256))
    step: Mapped[int] = mapped_column(BigInteger)
    mime: Mapped[str] = mapped_column(String(64))
    caption: Mapped[str] = mapped_column(Text, default="")
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Alert(Base):
    """Something a monitor (or the user) flagged about a run's metric."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(256), default="")
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    value: Mapped[float | None] = mapped_column(Double, nullable=True)
    # SQLite turns NaN into NULL; this flag tells a NaN value apart from "no value".
    value_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
