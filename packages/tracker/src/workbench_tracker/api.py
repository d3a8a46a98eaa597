"""The read API: query runs and their metrics from any store (local file, PostgreSQL, HTTP).

api = wt.Api()
for run in api.runs(project="mnist", config={"lr": 0.1}, status="finished"):
    steps, values = run.metric("loss")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from workbench_tracker.store.base import AlertInfo, MediaInfo, RunInfo, Store, decode_float

__all__ = ["Api", "ApiRun"]


class ApiRun:
    """A stored run, read-only (apart from :meth:`refresh`)."""

    def __init__(self, store: Store, info: RunInfo) -> None:
        self._store = store
        self._info = info

    @property
    def id(self) -> str:
        """The run id."""
        return self._info.id

    @property
    def name(self) -> str:
        """Display name."""
        return self._info.name

    @property
    def project(self) -> str:
        """The project."""
        return self._info.project

    @property
    def status(self) -> str:
        """running, finished, failed or crashed."""
        return self._info.status

    @property
    def config(self) -> dict[str, Any]:
        """Hyper-parameters."""
        return self._info.config

    @property
    def summary(self) -> dict[str, Any]:
        """Summary values (NaN/Inf decoded back to floats)."""
        return {
            k: decode_float(v) if v in ("NaN", "Infinity", "-Infinity") else v
            for k, v in self._info.summary.items()
        }

    @property
    def tags(self) -> list[str]:
        """Tags."""
        return self._info.tags

    @property
    def notes(self) -> str:
        """Notes."""
        return self._info.notes

    @property
    def environment(self) -> dict[str, Any]:
        """Captured environment."""
        return self._info.environment

    @property
    def error(self) -> str | None:
        """The exception that failed the run, if any."""
        return self._info.error

    @property
    def traceback(self) -> str | None:
        """Its traceback."""
        return self._info.traceback

    @property
    def created_at(self) -> datetime | None:
        """Creation time (UTC)."""
        return self._info.created_at

    def refresh(self) -> ApiRun:
        """Re-read the run from the store."""
        self._info = self._store.get_run(self.id)
        return self

    def metric_keys(self) -> list[str]:
        """Keys this run logged."""
        return list(self._store.metric_keys(self.id))

    def metric(self, key: str, *, points: int | None = None) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric; ``points`` downsamples (LTTB) where it is stored."""
        if points is not None:
            s = self._store.metric_series_downsampled(self.id, key, points=points)
        else:
            s = self._store.metric_series(self.id, key)
        return s.steps, s.values

    def history(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rows ``{"step": s, key: value, ...}`` ordered by step (a key absent at a step is
        absent from that row)."""
        wanted = list(keys) if keys is not None else self.metric_keys()
        rows: dict[int, dict[str, Any]] = {}
        for key in wanted:
            s = self._store.metric_series(self.id, key)
            for step, value in zip(s.steps, s.values, strict=True):
                rows.setdefault(step, {"step": step})[key] = value
        return [rows[s] for s in sorted(rows)]

    def media(self, key: str | None = None) -> list[MediaInfo]:
        """Logged images (metadata); bytes via ``Api.media_bytes``."""
        return self._store.list_media(self.id, key)

    def alerts(self) -> list[AlertInfo]:
        """Alerts raised on this run, newest first."""
        return self._store.list_alerts(self.id)

    def __repr__(self) -> str:
        return f"ApiRun(id={self.id!r}, name={self.name!r}, status={self.status!r})"


class Api:
    """Read access to a store.

    Args:
        store: a Store or URL; default ``get_store()`` (``WORKBENCH_TRACKER_URL`` or SQLite).
    """

    def __init__(self, store: Store | str | None = None) -> None:
        from workbench_tracker.store import get_store

        self.store = store if isinstance(store, Store) else get_store(store)

    def runs(
        self,
        project: str | None = None,
        *,
        tags: Sequence[str] | str = (),
        status: str | None = None,
        config: Mapping[str, Any] | None = None,
        sort: str = "-created_at",
        limit: int = 1000,
        offset: int = 0,
    ) -> list[ApiRun]:
        """Runs matching every filter (see ``Store.list_runs``)."""
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        infos, _ = self.store.list_runs(
            project=project,
            tags=tag_list,
            status=status,
            config=config,
            sort=sort,
            limit=limit,
            offset=offset,
        )
        return [ApiRun(self.store, i) for i in infos]

    def run(self, run_id: str) -> ApiRun:
        """One run. Raises ``RunNotFoundError``."""
        return ApiRun(self.store, self.store.get_run(run_id))

    def projects(self) -> list[str]:
        """Project names."""
        return [p.name for p in self.store.list_projects()]

    def media_bytes(self, media_id: int) -> bytes:
        """An image's bytes."""
        return self.store.get_media(media_id)[1]
