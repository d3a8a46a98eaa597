"""The ``Store`` interface every tracker backend implements, and the records it returns.

The SDK, the read API and the viewer only ever talk to a ``Store``; SQLAlchemy (SQLite,
PostgreSQL) and HTTP (a remote tracker viewer) are implementations, tested by one shared suite.
Records are plain dataclasses with ``to_dict``/``from_dict`` so the HTTP store and the viewer
speak exactly the same JSON.

Tree of errors::

    Exception
     └── StoreError              any failure of a store operation
          ├── RunNotFoundError   (also a KeyError) the run id does not exist
          └── StoreBusyError     the database stayed locked/unreachable after every retry
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "RUN_STATUSES",
    "AlertInfo",
    "MediaInfo",
    "MetricRow",
    "ProjectInfo",
    "RunInfo",
    "RunNotFoundError",
    "Series",
    "Store",
    "StoreBusyError",
    "StoreError",
    "decode_float",
    "encode_float",
]

RUN_STATUSES = ("running", "finished", "failed", "crashed")

MetricRow = tuple[str, int, float, float]
"""One point as the writer hands it to a store: (key, step, value, wall_time)."""


class StoreError(Exception):
    """A store operation failed."""


class RunNotFoundError(StoreError, KeyError):
    """No run has this id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "run not found"


class StoreBusyError(StoreError):
    """The backend stayed busy (locked / unreachable) after every retry."""


def encode_float(value: float | None) -> float | str | None:
    """JSON has no NaN/Infinity: send them as the strings JavaScript's ``Number()`` parses."""
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: Any) -> float:
    """Inverse of :func:`encode_float`; ``None`` (a NULL from SQL) reads back as NaN."""
    if value is None:
        return math.nan
    return float(value)


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@dataclass
class RunInfo:
    """Everything the store knows about one run (metrics aside)."""

    id: str
    project: str
    name: str
    status: str = "running"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO strings)."""
        out = asdict(self)
        for k in ("created_at", "updated_at", "finished_at"):
            v = out[k]
            out[k] = v.isoformat() if v is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInfo:
        """Build from :meth:`to_dict` output (unknown keys ignored)."""
        return cls(
            id=str(data["id"]),
            project=str(data["project"]),
            name=str(data.get("name") or data["id"]),
            status=str(data.get("status") or "running"),
            created_at=_dt(data.get("created_at")),
            updated_at=_dt(data.get("updated_at")),
            finished_at=_dt(data.get("finished_at")),
            config=dict(data.get("config") or {}),
            summary=dict(data.get("summary") or {}),
            tags=list(data.get("tags") or []),
            notes=str(data.get("notes") or ""),
            environment=dict(data.get("environment") or {}),
            error=data.get("error"),
            traceback=data.get("traceback"),
        )


@dataclass
class ProjectInfo:
    """A project and how many runs it holds."""

    name: str
    run_count: int = 0
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "run_count": self.run_count,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass
class Series:
    """One metric's points, ordered by step. NaN/Inf are real floats here."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite values become strings (see :func:`encode_float`)."""
        return {
            "steps": list(self.steps),
            "values": [encode_float(v) for v in self.values],
            "times": list(self.times),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Series:
        """Inverse of :meth:`to_dict`."""
        return cls(
            steps=[int(s) for s in data.get("steps", [])],
            values=[decode_float(v) for v in data.get("values", [])],
            times=[float(t) for t in data.get("times", [])],
        )


@dataclass
class MediaInfo:
    """An image's metadata (bytes are fetched separately)."""

    id: int
    run_id: str
    key: str
    step: int
    mime: str
    caption: str = ""
    width: int | None = None
    height: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class AlertInfo:
    """An alert raised on a run (by a monitor or the user)."""

    id: int
    run_id: str
    key: str
    kind: str
    message: str
    step: int | None = None
    value: float | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "key": self.key,
            "kind": self.kind,
            "message": self.message,
            "step": self.step,
            "value": encode_float(self.value),
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertInfo:
        """Inverse of :meth:`to_dict`."""
        value = data.get("value")
        return cls(
            id=int(data["id"]),
            run_id=str(data["run_id"]),
            key=str(data.get("key") or ""),
            kind=str(data["kind"]),
            message=str(data.get("message") or ""),
            step=data.get("step"),
            value=None if value is None else decode_float(value),
            created_at=_dt(data.get("created_at")),
        )


class Store(ABC):
    """Where runs, metrics, media and alerts live.

    Implementations must be safe to call from several threads (the SDK's writer thread and the
    caller's thread use one store at once).
    """

    url: str

    # -- runs ---------------------------------------------------------------------------------
    @abstractmethod
    def create_run(self, run: RunInfo) -> RunInfo:
        """Insert a run (creating its project if needed) and return it as stored."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunInfo:
        """Return one run. Raises :class:`RunNotFoundError`."""

    @abstractmethod
    def update_run(self, run_id: str, **fields: Any) -> RunInfo:
        """Change some of a run's fields (status, summary, config, tags, notes, finished_at,
        error, traceback, environment, name). Raises :class:`RunNotFoundError`."""

    @abstractmethod
    def list_runs(
        self,
        *,
        project: str | None = None,
        tags: Sequence[str] = (),
        status: str | None = None,
        config: Mapping[str, Any] | None = None,
        sort: str = "-created_at",
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[RunInfo], int]:
        """Runs matching every filter (config values compared for equality, dotted keys reach
        into nested dicts), sorted by a run field or ``config.x``/``summary.x`` (``-`` prefix =
        descending), and the total count before pagination."""

    @abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Delete a run and everything it logged."""

    @abstractmethod
    def list_projects(self) -> list[ProjectInfo]:
        """Every project with its run count."""

    # -- metrics ------------------------------------------------------------------------------
    @abstractmethod
    def log_metrics(self, run_id: str, rows: Sequence[MetricRow]) -> None:
        """Append points in one batch (one transaction / request)."""

    @abstractmethod
    def metric_keys(self, run_id: str) -> dict[str, dict[str, Any]]:
        """``{key: {"count", "last_step", "last_value"}}`` for a run."""

    @abstractmethod
    def metric_series(
        self,
        run_id: str,
        key: str,
        *,
        min_step: int | None = None,
        max_step: int | None = None,
        after_step: int | None = None,
        limit: int | None = None,
    ) -> Series:
        """A metric's points by step; ``after_step`` keeps steps strictly greater (live tail)."""

    def metric_series_downsampled(
        self,
        run_id: str,
        key: str,
        *,
        points: int = 1000,
        method: str = "lttb",
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Series:
        """The series reduced to about ``points`` points (``lttb`` or ``minmax``) where it is
        read. Stores that can reduce closer to the data (the HTTP store: on the server)
        override this."""
        from workbench_tracker.downsample import downsample_series

        series = self.metric_series(run_id, key, min_step=min_step, max_step=max_step)
        return downsample_series(series, points, method)

    # -- media and alerts ---------------------------------------------------------------------
    @abstractmethod
    def add_media(
        self,
        run_id: str,
        key: str,
        step: int,
        data: bytes,
        *,
        mime: str = "image/png",
        caption: str = "",
        width: int | None = None,
        height: int | None = None,
    ) -> MediaInfo:
        """Store an image's bytes."""

    @abstractmethod
    def list_media(self, run_id: str, key: str | None = None) -> list[MediaInfo]:
        """A run's images (metadata), by key then step."""

    @abstractmethod
    def get_media(self, media_id: int) -> tuple[MediaInfo, bytes]:
        """One image and its bytes. Raises ``KeyError`` when absent."""

    @abstractmethod
    def add_alert(
        self,
        run_id: str,
        kind: str,
        message: str,
        *,
        key: str = "",
        step: int | None = None,
        value: float | None = None,
    ) -> AlertInfo:
        """Record an alert on a run."""

    @abstractmethod
    def list_alerts(
        self, run_id: str | None = None, *, project: str | None = None, limit: int = 1000
    ) -> list[AlertInfo]:
        """Alerts, newest first, for a run or a project (or all)."""

    # -- lifecycle ----------------------------------------------------------------------------
    def ping(self) -> bool:
        """True when the backend answers (used by ``/readyz``)."""
        self.list_projects()
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
