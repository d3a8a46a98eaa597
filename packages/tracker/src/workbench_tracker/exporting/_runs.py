"""Reading runs out of, and writing runs into, the tracker's SQLAlchemy schema.

Exporters and importers work on :class:`RunRecord` values so every format shares one reader and
one writer. NaN is stored as NULL by the store; reads map it back to NaN.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.orm import Session

__all__ = ["RunRecord", "deterministic_run_id", "load_runs", "run_exists", "write_run"]


@dataclass
class RunRecord:
    """A run with its metrics, independent of storage."""

    id: str
    project: str
    name: str
    status: str = "finished"
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    finished_at: str | None = None
    # (key, step, value, wall_time)
    metrics: list[tuple[str, int, float, float]] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        """Everything but the metrics, JSON-ready."""
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "status": self.status,
            "config": self.config,
            "summary": self.summary,
            "tags": self.tags,
            "notes": self.notes,
            "environment": self.environment,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


def _schema() -> Any:
    from workbench_tracker.store import schema

    return schema


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.isoformat()


def _parse_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def load_runs(
    engine: Engine,
    *,
    project: str | None = None,
    run_ids: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    status: str | None = None,
    keys: Sequence[str] | None = None,
    with_metrics: bool = True,
) -> list[RunRecord]:
    """Load runs matching every given filter (tags: the run has all of them)."""
    sc = _schema()
    with Session(engine) as s:
        q = select(sc.Run).order_by(sc.Run.created_at, sc.Run.id)
        if project is not None:
            q = q.where(sc.Run.project == project)
        if run_ids:
            q = q.where(sc.Run.id.in_(list(run_ids)))
        if status is not None:
            q = q.where(sc.Run.status == status)
        for tag in tags or []:
            q = q.where(
                select(sc.RunTag.run_id)
                .where(sc.RunTag.run_id == sc.Run.id, sc.RunTag.tag == tag)
                .exists()
            )
        out: list[RunRecord] = []
        for r in s.scalars(q).all():
            rec = RunRecord(
                id=r.id,
                project=r.project,
                name=r.name,
                status=r.status,
                config=dict(r.config or {}),
                summary=dict(r.summary or {}),
                tags=list(r.tags or []),
                notes=r.notes or "",
                environment=dict(r.environment or {}),
                created_at=_iso(r.created_at),
                finished_at=_iso(r.finished_at),
            )
            if with_metrics:
                mq = (
                    select(sc.Metric.key, sc.Metric.step, sc.Metric.value, sc.Metric.wall_time)
                    .where(sc.Metric.run_id == r.id)
                    .order_by(sc.Metric.key, sc.Metric.step, sc.Metric.id)
                )
                if keys:
                    mq = mq.where(sc.Metric.key.in_(list(keys)))
                rec.metrics = [
                    (k, int(st), math.nan if v is None else float(v), float(wt or 0.0))
                    for k, st, v, wt in s.execute(mq).all()
                ]
            out.append(rec)
        return out


def deterministic_run_id(project: str, source_id: str) -> str:
    """A remapped run id that is the same on every import, so re-importing adds nothing."""
    return hashlib.sha256(f"{project}\0{source_id}".encode()).hexdigest()[:24]


def run_exists(engine: Engine, run_id: str) -> bool:
    """Whether a run with this id is already stored."""
    sc = _schema()
    with Session(engine) as s:
        return s.get(sc.Run, run_id) is not None


def _db_value(v: float) -> float | None:
    return None if math.isnan(v) else v


def write_run(engine: Engine, rec: RunRecord, *, replace: bool = False) -> bool:
    """Insert a run with its metrics in one transaction; nothing is half-written.

    Returns:
        False (and writes nothing) when the run id already exists and ``replace`` is False.
    """
    sc = _schema()
    sc.Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        if s.get(sc.Project, rec.project) is None:
            s.add(sc.Project(name=rec.project))
            s.flush()
        existing = s.get(sc.Run, rec.id)
        if existing is not None:
            if not replace:
                return False
            s.execute(delete(sc.Metric).where(sc.Metric.run_id == rec.id))
            s.execute(delete(sc.MetricKey).where(sc.MetricKey.run_id == rec.id))
            s.execute(delete(sc.MetricBlock).where(sc.MetricBlock.run_id == rec.id))
            s.execute(delete(sc.RunTag).where(sc.RunTag.run_id == rec.id))
            s.delete(existing)
            s.flush()
        now = datetime.now(UTC)
        s.add(
            sc.Run(
                id=rec.id,
                project=rec.project,
                name=rec.name,
                status=rec.status,
                created_at=_parse_dt(rec.created_at) or now,
                updated_at=now,
                finished_at=_parse_dt(rec.finished_at),
                config=rec.config,
                summary=rec.summary,
                tags=rec.tags,
                notes=rec.notes,
                environment=rec.environment,
            )
        )
        s.flush()
        for tag in dict.fromkeys(rec.tags):
            s.add(sc.RunTag(run_id=rec.id, tag=tag))
        rows = [
            {"run_id": rec.id, "key": k, "step": st, "value": _db_value(v), "wall_time": wt}
            for k, st, v, wt in rec.metrics
        ]
        for chunk in _chunks(rows, 5000):
            s.execute(insert(sc.Metric), chunk)
        # The per-block summaries the store's writer keeps: without them a downsampled read of
        # a long imported series (which reads the summaries, not every row) would come back empty.
        from workbench_tracker.store.sql import block_summaries

        blocks = block_summaries(rec.id, rec.metrics)
        for chunk in _chunks(blocks, 5000):
            s.execute(insert(sc.MetricBlock), chunk)
        summary: dict[str, dict[str, Any]] = {}
        for k, st, v, wt in rec.metrics:
            cur = summary.setdefault(k, {"count": 0, "last_step": st, "last_value": v, "t": wt})
            cur["count"] += 1
            if st >= cur["last_step"]:
                cur.update(last_step=st, last_value=v, t=wt)
        for k, cur in summary.items():
            s.add(
                sc.MetricKey(
                    run_id=rec.id,
                    key=k,
                    count=cur["count"],
                    last_step=cur["last_step"],
                    last_value=_db_value(cur["last_value"]),
                    updated_at=cur["t"],
                )
            )
    return True


def _chunks(rows: list[dict[str, Any]], n: int) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]
