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
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "RUN_STATUSES",
    "STALE_ENV",
    "AlertInfo",
    "Envelope",
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
    "heartbeat_interval_s",
    "live_status",
    "stale_after_s",
]

RUN_STATUSES = ("running", "finished", "failed", "crashed")

STALE_ENV = "WORKBENCH_TRACKER_STALE_S"
DEFAULT_STALE_S = 90.0


def stale_after_s() -> float:
    """Seconds without a heartbeat after which a ``running`` run reads as ``crashed``.

    A process killed with SIGKILL (or an OOM kill, or a lost machine) runs no exit hook, so its
    run would say ``running`` forever. Every live run's writer touches the run's ``updated_at``
    at least every :func:`heartbeat_interval_s`; a reader that sees a ``running`` run older than
    this reports it as ``crashed`` (the stored status is untouched, so a resumed run or a
    heartbeat that was only late turns it back to ``running``). ``WORKBENCH_TRACKER_STALE_S``
    sets it (default 90); writers and readers should agree on it.
    """
    raw = os.environ.get(STALE_ENV)
    if not raw:
        return DEFAULT_STALE_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{STALE_ENV}: must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{STALE_ENV}: must be a positive number of seconds, got {raw!r}")
    return value


def heartbeat_interval_s() -> float:
    """How often a live run's writer touches the run: a quarter of :func:`stale_after_s`, at
    most 15 s, so a few heartbeats may be late before a healthy run looks crashed."""
    return min(15.0, stale_after_s() / 4)


def live_status(status: str, updated_at: datetime | None, now: datetime | None = None) -> str:
    """The status a reader should show: ``crashed`` for a ``running`` run whose heartbeat
    stopped more than :func:`stale_after_s` ago, else ``status`` as stored."""
    if status != "running" or updated_at is None:
        return status
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    if (current - updated_at).total_seconds() > stale_after_s():
        return "crashed"
    return status


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
class Envelope:
    """A metric's min/max band: per bucket of about equal point count, the span it covers (first
    and last step, and their wall times) and the min and max of its finite values.

    NaN and +/-Inf are left out of ``mins``/``maxs``; a bucket with no finite value has NaN for
    both. A chart draws each bucket as a flat band from ``steps[i]`` to ``last_steps[i]``.
    """

    steps: list[int] = field(default_factory=list)
    last_steps: list[int] = field(default_factory=list)
    mins: list[float] = field(default_factory=list)
    maxs: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    last_times: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def from_arrays(
        cls, steps: Any, times: Any, first: Any, last: Any, mins: Any, maxs: Any
    ) -> Envelope:
        """Build from numpy arrays: the items' steps and times, and the buckets' first/last
        item indices and min/max (as :func:`~workbench_tracker.downsample.envelope_arrays`
        returns them)."""
        return cls(
            steps=steps[first].tolist(),
            last_steps=steps[last].tolist(),
            mins=mins.tolist(),
            maxs=maxs.tolist(),
            times=times[first].tolist() if len(times) else [],
            last_times=times[last].tolist() if len(times) else [],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``min``/``max`` keys); NaN becomes ``"NaN"`` (see
        :func:`encode_float`)."""
        return {
            "steps": list(self.steps),
            "last_steps": list(self.last_steps),
            "min": [encode_float(v) for v in self.mins],
            "max": [encode_float(v) for v in self.maxs],
            "times": list(self.times),
            "last_times": list(self.last_times),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """Inverse of :meth:`to_dict`."""
        return cls(
            steps=[int(s) for s in data.get("steps", [])],
            last_steps=[int(s) for s in data.get("last_steps", [])],
            mins=[decode_float(v) for v in data.get("min", [])],
            maxs=[decode_float(v) for v in data.get("max", [])],
            times=[float(t) for t in data.get("times", [])],
            last_times=[float(t) for t in data.get("last_times", [])],
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
        descending), and the total count before pagination. ``status`` matches the live status
        (see :func:`live_status`): ``crashed`` includes ``running`` runs whose heartbeat
        stopped."""

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

    def metric_envelope(
        self,
        run_id: str,
        key: str,
        *,
        buckets: int = 500,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Envelope:
        """The min/max band of a metric over about ``buckets`` buckets of equal point count
        (see :class:`Envelope`), for drawing behind a downsampled line. This default reads
        every point; stores that keep summaries (SQL) or can reduce on a server (HTTP) override
        it.

        Raises:
            ValueError: ``buckets`` < 1.
        """
        import numpy as np

        from workbench_tracker.downsample import envelope_arrays

        if buckets < 1:
            raise ValueError("buckets: must be at least 1")
        series = self.metric_series(run_id, key, min_step=min_step, max_step=max_step)
        steps = np.asarray(series.steps, dtype=np.int64)
        times = np.asarray(series.times, dtype=np.float64)
        first, last, mins, maxs = envelope_arrays(series.values, buckets)
        return Envelope.from_arrays(steps, times, first, last, mins, maxs)

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
