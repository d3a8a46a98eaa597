"""``SQLStore``: the tracker store on any SQLAlchemy database (SQLite by default, PostgreSQL).

SQLite is opened in WAL mode with a busy timeout, so one writer and any number of readers (the
viewer) work at once, and several processes logging to one file queue up instead of failing.
Every write transaction is additionally retried when SQLite still reports "database is locked"
after its busy timeout; only then does it give up with :class:`StoreBusyError`.

The metrics insert bypasses the ORM (a DBAPI ``executemany`` of plain tuples): it is the
tracker's hot path, and ORM objects would cost more than the database itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, create_engine, delete, event, func, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from workbench_tracker.store.base import (
    AlertInfo,
    Envelope,
    MediaInfo,
    MetricRow,
    ProjectInfo,
    RunInfo,
    RunNotFoundError,
    Series,
    Store,
    StoreBusyError,
    live_status,
    stale_after_s,
)
from workbench_tracker.store.schema import (
    BLOCK_STEPS,
    Alert,
    Base,
    Media,
    Metric,
    MetricBlock,
    MetricKey,
    Project,
    Run,
    RunTag,
)

__all__ = ["SQLStore", "block_summaries", "default_sqlite_url", "tracker_home"]

_T = TypeVar("_T")

_RUN_FIELDS = {
    "name",
    "status",
    "finished_at",
    "config",
    "summary",
    "tags",
    "notes",
    "environment",
    "error",
    "traceback",
}
_SORTABLE = {"created_at", "updated_at", "finished_at", "name", "status", "id", "project"}


def tracker_home() -> Path:
    """``WORKBENCH_HOME`` (default ``~/.workbench``), via workbench-core when it has it."""
    try:
        from workbench_core.config import workbench_home  # type: ignore[import-not-found]

        return Path(workbench_home())
    except ImportError:
        return Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".workbench")


def default_sqlite_url() -> str:
    """``sqlite:///$WORKBENCH_HOME/tracker.db``."""
    return f"sqlite:///{tracker_home() / 'tracker.db'}"


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _dig(data: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    cur: Any = data
    for part in dotted.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return False, None
    return True, cur


def config_matches(config: Mapping[str, Any], dotted: str, expected: Any) -> bool:
    """Equality that forgives types coming from a query string: ``"0.1"`` matches ``0.1``."""
    found, actual = _dig(config, dotted)
    if not found:
        return False
    if actual == expected and type(actual) is not bool and type(expected) is not bool:
        return True
    if isinstance(actual, bool) or isinstance(expected, bool):
        return str(actual).lower() == str(expected).lower()
    if isinstance(actual, int | float) and isinstance(expected, str):
        try:
            return float(expected) == float(actual)
        except ValueError:
            return False
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return float(actual) == float(expected)
    return str(actual) == str(expected) or json.dumps(actual) == str(expected)


def _sort_key(run: Any, field: str) -> tuple[int, Any]:
    """Order of one run (a RunInfo or a row with the needed columns) by ``field``."""
    if field.startswith(("config.", "summary.")):
        source, _, dotted = field.partition(".")
        found, value = _dig(getattr(run, source) or {}, dotted)
    else:
        found, value = True, getattr(run, field, None)
    if not found or value is None:
        return (2, "")
    if isinstance(value, bool | int | float):
        return (0, float(value))
    if isinstance(value, datetime):
        return (0, value.timestamp())
    return (1, str(value))


_BLOCK_UPSERT = (
    "INSERT INTO metric_blocks (run_id, key, block, count, nan_count, first_step, first_value, "
    "first_time, last_step, last_value, last_time, min_step, min_value, max_step, max_value) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key, block) DO UPDATE SET "
    "count = metric_blocks.count + excluded.count, "
    "nan_count = metric_blocks.nan_count + excluded.nan_count, "
    "first_step = CASE WHEN excluded.first_step < metric_blocks.first_step "
    "THEN excluded.first_step ELSE metric_blocks.first_step END, "
    "first_value = CASE WHEN excluded.first_step < metric_blocks.first_step "
    "THEN excluded.first_value ELSE metric_blocks.first_value END, "
    "first_time = CASE WHEN excluded.first_step < metric_blocks.first_step "
    "THEN excluded.first_time ELSE metric_blocks.first_time END, "
    "last_step = CASE WHEN excluded.last_step >= metric_blocks.last_step "
    "THEN excluded.last_step ELSE metric_blocks.last_step END, "
    "last_value = CASE WHEN excluded.last_step >= metric_blocks.last_step "
    "THEN excluded.last_value ELSE metric_blocks.last_value END, "
    "last_time = CASE WHEN excluded.last_step >= metric_blocks.last_step "
    "THEN excluded.last_time ELSE metric_blocks.last_time END, "
    "min_step = CASE WHEN excluded.min_value IS NOT NULL AND (metric_blocks.min_value IS NULL "
    "OR excluded.min_value < metric_blocks.min_value) "
    "THEN excluded.min_step ELSE metric_blocks.min_step END, "
    "min_value = CASE WHEN excluded.min_value IS NOT NULL AND (metric_blocks.min_value IS NULL "
    "OR excluded.min_value < metric_blocks.min_value) "
    "THEN excluded.min_value ELSE metric_blocks.min_value END, "
    "max_step = CASE WHEN excluded.max_value IS NOT NULL AND (metric_blocks.max_value IS NULL "
    "OR excluded.max_value > metric_blocks.max_value) "
    "THEN excluded.max_step ELSE metric_blocks.max_step END, "
    "max_value = CASE WHEN excluded.max_value IS NOT NULL AND (metric_blocks.max_value IS NULL "
    "OR excluded.max_value > metric_blocks.max_value) "
    "THEN excluded.max_value ELSE metric_blocks.max_value END"
)


def _block_rows(run_id: str, rows: Sequence[MetricRow]) -> list[tuple[Any, ...]]:
    """Per (key, block) summaries of a batch, ready for ``_BLOCK_UPSERT``."""
    acc: dict[tuple[str, int], list[Any]] = {}
    isnan = math.isnan
    for key, step, value, t in rows:
        b = step // BLOCK_STEPS
        a = acc.get((key, b))
        nan = isnan(value)
        if a is None:
            # count, nan, fstep, fval, ftime, lstep, lval, ltime, minstep, minval, maxstep, maxval
            a = [0, 0, step, value, t, step, value, t, None, None, None, None]
            acc[(key, b)] = a
        a[0] += 1
        if step < a[2]:
            a[2], a[3], a[4] = step, value, t
        if step >= a[5]:
            a[5], a[6], a[7] = step, value, t
        if nan:
            a[1] += 1
            continue
        if a[9] is None or value < a[9]:
            a[8], a[9] = step, value
        if a[11] is None or value > a[11]:
            a[10], a[11] = step, value
    out = []
    for (key, b), a in acc.items():
        fv = None if isnan(a[3]) else a[3]
        lv = None if isnan(a[6]) else a[6]
        out.append(
            (run_id, key, b, a[0], a[1], a[2], fv, a[4], a[5], lv, a[7], a[8], a[9], a[10], a[11])
        )
    return out


_BLOCK_COLUMNS = (
    "run_id",
    "key",
    "block",
    "count",
    "nan_count",
    "first_step",
    "first_value",
    "first_time",
    "last_step",
    "last_value",
    "last_time",
    "min_step",
    "min_value",
    "max_step",
    "max_value",
)


def block_summaries(run_id: str, rows: Sequence[MetricRow]) -> list[dict[str, Any]]:
    """The ``metric_blocks`` rows of a run's complete set of points, as dicts for an ORM
    insert (the importers write whole runs; the writer upserts batch by batch instead)."""
    return [dict(zip(_BLOCK_COLUMNS, r, strict=True)) for r in _block_rows(run_id, rows)]


class SQLStore(Store):
    """A tracker store on a SQLAlchemy URL.

    Args:
        url: any SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``); default
            ``sqlite:///$WORKBENCH_HOME/tracker.db``.
        busy_timeout_s: how long SQLite waits on a lock before reporting "database is locked".
        retries: extra attempts for a write that still finds the database locked.
    """

    def __init__(
        self, url: str | None = None, *, busy_timeout_s: float = 30.0, retries: int = 8
    ) -> None:
        self.url = url or default_sqlite_url()
        self._retries = retries
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1] if "///" in self.url else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            timeout_ms = int(busy_timeout_s * 1000)

            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout={timeout_ms}")
                # WAL: readers never block the writer; NORMAL sync is durable across process
                # crashes (SIGKILL) and only risks the last commits on power loss.
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._paramstyle = self.engine.dialect.paramstyle
        self._block_upsert = self._sql(_BLOCK_UPSERT)
        self._lock = threading.Lock()
        self._create_schema()

    # -- plumbing -----------------------------------------------------------------------------
    def _create_schema(self) -> None:
        with contextlib.suppress(ImportError):  # the artifact tables join the same Base
            import workbench_tracker.artifacts.schema  # noqa: F401

        def create() -> None:
            # Several processes opening a fresh database race between create_all's "does the
            # table exist" check and its CREATE; the loser sees "already exists" and simply
            # checks again (each round, at least one more table is known to exist).
            for _ in range(20):
                try:
                    Base.metadata.create_all(self.engine)
                    return
                except OperationalError as exc:
                    if "already exists" not in str(exc):
                        raise
            Base.metadata.create_all(self.engine)

        self._retry(create)

    def _retry(self, fn: Callable[[], _T]) -> _T:
        for attempt in range(self._retries + 1):
            try:
                return fn()
            except OperationalError as exc:
                if not _is_locked(exc):
                    raise
                if attempt == self._retries:
                    raise StoreBusyError(f"database stayed locked: {exc}") from exc
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self._sessions() as sess, sess.begin():
            yield sess

    def _sql(self, sql: str) -> str:
        if self._paramstyle in ("format", "pyformat"):
            return sql.replace("?", "%s")
        return sql

    @staticmethod
    def _info(row: Run) -> RunInfo:
        updated = _utc(row.updated_at)
        return RunInfo(
            id=row.id,
            project=row.project,
            name=row.name,
            status=live_status(row.status, updated),
            created_at=_utc(row.created_at),
            updated_at=updated,
            finished_at=_utc(row.finished_at),
            config=dict(row.config or {}),
            summary=dict(row.summary or {}),
            tags=list(row.tags or []),
            notes=row.notes or "",
            environment=dict(row.environment or {}),
            error=row.error,
            traceback=row.traceback,
        )

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, run: RunInfo) -> RunInfo:
        def work() -> RunInfo:
            with self.session() as s:
                if s.get(Run, run.id) is not None:
                    raise ValueError(f"id: run {run.id!r} already exists")
                if s.get(Project, run.project) is None:
                    s.add(Project(name=run.project))
                    s.flush()
                now = datetime.now(UTC)
                row = Run(
                    id=run.id,
                    project=run.project,
                    name=run.name,
                    status=run.status,
                    created_at=run.created_at or now,
                    updated_at=now,
                    finished_at=run.finished_at,
                    config=run.config,
                    summary=run.summary,
                    tags=list(dict.fromkeys(run.tags)),
                    notes=run.notes,
                    environment=run.environment,
                    error=run.error,
                    traceback=run.traceback,
                )
                s.add(row)
                for tag in dict.fromkeys(run.tags):
                    s.add(RunTag(run_id=run.id, tag=tag))
                s.flush()
                return self._info(row)

        try:
            return self._retry(work)
        except IntegrityError:
            # Two processes created the same new project (or run id) at once: the second
            # attempt sees the winner's row and either proceeds or reports the duplicate.
            return self._retry(work)

    def get_run(self, run_id: str) -> RunInfo:
        with self.session() as s:
            row = s.get(Run, run_id)
            if row is None:
                raise RunNotFoundError(f"run {run_id!r} not found")
            return self._info(row)

    def update_run(self, run_id: str, **fields: Any) -> RunInfo:
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not an updatable run field")

        def work() -> RunInfo:
            with self.session() as s:
                row = s.get(Run, run_id)
                if row is None:
                    raise RunNotFoundError(f"run {run_id!r} not found")
                for name, value in fields.items():
                    if name == "finished_at" and isinstance(value, str):
                        value = datetime.fromisoformat(value)
                    if name == "tags":
                        value = list(dict.fromkeys(value))
                        s.execute(delete(RunTag).where(RunTag.run_id == run_id))
                        for tag in value:
                            s.add(RunTag(run_id=run_id, tag=tag))
                    setattr(row, name, value)
                row.updated_at = datetime.now(UTC)
                s.flush()
                return self._info(row)

        return self._retry(work)

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
        desc = sort.startswith("-")
        field = sort.lstrip("-+") or "created_at"
        if field not in _SORTABLE and not field.startswith(("config.", "summary.")):
            raise ValueError(f"sort: cannot sort by {field!r}")
        stmt = select(Run)
        if project is not None:
            stmt = stmt.where(Run.project == project)
        if status is not None:
            # The live status: a "running" run without a recent heartbeat reads as "crashed".
            cutoff = datetime.fromtimestamp(time.time() - stale_after_s(), UTC)
            if status == "running":
                stmt = stmt.where(Run.status == "running", Run.updated_at >= cutoff)
            elif status == "crashed":
                stmt = stmt.where(
                    or_(
                        Run.status == "crashed",
                        and_(Run.status == "running", Run.updated_at < cutoff),
                    )
                )
            else:
                stmt = stmt.where(Run.status == status)
        for tag in tags:
            stmt = stmt.where(Run.id.in_(select(RunTag.run_id).where(RunTag.tag == tag)))
        with self.session() as s:
            if config or field not in _SORTABLE:
                # Config filters and config/summary sorts run in Python (their loose equality
                # has no portable SQL). Only the columns they need are read for every run;
                # whole rows (environment included) are loaded for the page alone.
                columns = [Run.id, Run.config, Run.summary]
                if field in _SORTABLE and field != "id":
                    columns.append(getattr(Run, field))
                light = list(s.execute(stmt.with_only_columns(*columns)))
                for dotted, expected in (config or {}).items():
                    light = [r for r in light if config_matches(r.config or {}, dotted, expected)]
                keyed = [(_sort_key(r, field), r.id) for r in light]
                present = sorted((k for k in keyed if k[0][0] < 2), reverse=desc)
                missing = [k for k in keyed if k[0][0] == 2]  # no value: last, either way
                page = [rid for _, rid in (present + missing)[offset : offset + limit]]
                full: dict[str, Run] = {}
                for start in range(0, len(page), 500):  # bounded IN lists on every dialect
                    chunk = page[start : start + 500]
                    full.update((r.id, r) for r in s.scalars(select(Run).where(Run.id.in_(chunk))))
                return [self._info(full[i]) for i in page], len(light)
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            column = getattr(Run, field)
            order = [column.desc() if desc else column.asc(), Run.id.desc() if desc else Run.id]
            rows = s.scalars(stmt.order_by(*order).limit(limit).offset(offset))
            return [self._info(r) for r in rows], int(total)

    def delete_run(self, run_id: str) -> None:
        def work() -> None:
            with self.session() as s:
                if s.get(Run, run_id) is None:
                    raise RunNotFoundError(f"run {run_id!r} not found")
                for table in (Metric, MetricKey, MetricBlock, Media, Alert, RunTag):
                    s.execute(delete(table).where(table.run_id == run_id))
                s.execute(delete(Run).where(Run.id == run_id))

        self._retry(work)

    def list_projects(self) -> list[ProjectInfo]:
        with self.session() as s:
            counts = dict(
                s.execute(select(Run.project, func.count(Run.id)).group_by(Run.project)).all()
            )
            return [
                ProjectInfo(p.name, int(counts.get(p.name, 0)), _utc(p.created_at))
                for p in s.scalars(select(Project).order_by(Project.name))
            ]

    # -- metrics ------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, rows: Sequence[MetricRow]) -> None:
        if not rows:
            return
        # The hot path. The run id is inlined as an escaped SQL literal so the writer's row
        # tuples go to executemany as they are (no per-row rebuild); NaN needs no conversion
        # (SQLite stores a bound NaN as NULL, PostgreSQL stores NaN).
        literal = "'" + run_id.replace("'", "''") + "'"
        if self._paramstyle in ("format", "pyformat"):
            literal = literal.replace("%", "%%")
        params = rows if isinstance(rows, list) else list(rows)
        insert = self._sql(
            "INSERT INTO metrics (run_id, key, step, value, wall_time) VALUES (@RUN@, ?, ?, ?, ?)"
        ).replace("@RUN@", literal)
        counts = Counter(map(itemgetter(0), params))
        # Steps never decrease within a run (log() enforces it), so a key's last row in the
        # batch is its newest point; the upsert below still keeps the larger step.
        last: dict[str, MetricRow] = {}
        for row in reversed(params):
            if row[0] not in last:
                last[row[0]] = row
                if len(last) == len(counts):
                    break
        upsert = self._sql(
            "INSERT INTO metric_keys (run_id, key, count, last_step, last_value, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, key) DO UPDATE SET "
            "count = metric_keys.count + excluded.count, "
            "last_step = CASE WHEN excluded.last_step >= metric_keys.last_step "
            "THEN excluded.last_step ELSE metric_keys.last_step END, "
            "last_value = CASE WHEN excluded.last_step >= metric_keys.last_step "
            "THEN excluded.last_value ELSE metric_keys.last_value END, "
            "updated_at = excluded.updated_at"
        )
        key_params = [
            (run_id, k, counts[k], st, None if math.isnan(v) else v, t)
            for k, (_, st, v, t) in last.items()
        ]

        block_params = _block_rows(run_id, params)

        def work() -> None:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(insert, params)  # type: ignore[arg-type]
                conn.exec_driver_sql(upsert, key_params)  # type: ignore[arg-type]
                conn.exec_driver_sql(self._block_upsert, block_params)  # type: ignore[arg-type]

        self._retry(work)

    def metric_keys(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(MetricKey).where(MetricKey.run_id == run_id))
            return {
                r.key: {
                    "count": int(r.count),
                    "last_step": int(r.last_step),
                    "last_value": math.nan if r.last_value is None else r.last_value,
                    "updated_at": r.updated_at,
                }
                for r in sorted(rows, key=lambda r: r.key)
            }

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
        sql = "SELECT step, value, wall_time FROM metrics WHERE run_id = ? AND key = ?"
        args: list[Any] = [run_id, key]
        if min_step is not None:
            sql += " AND step >= ?"
            args.append(min_step)
        if max_step is not None:
            sql += " AND step <= ?"
            args.append(max_step)
        if after_step is not None:
            sql += " AND step > ?"
            args.append(after_step)
        sql += " ORDER BY step, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._fetch_raw(self._sql(sql), tuple(args))
        if not rows:
            return Series()
        steps, values, times = zip(*rows, strict=True)
        nan = math.nan
        return Series(
            list(steps),
            [nan if v is None else v for v in values],
            list(times),
        )

    def _fetch_raw(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows as plain DBAPI tuples: SQLAlchemy ``Row`` objects cost ~10x more per row to
        build and to turn into numpy arrays, which matters at millions of points."""
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                cur.execute(sql, args)
                return list(cur.fetchall())
            finally:
                cur.close()
        finally:
            raw.close()

    def metric_arrays(self, run_id: str, key: str) -> tuple[Any, Any, Any]:
        """(steps, values, times) as numpy arrays, straight from the cursor (NULL -> NaN)."""
        import numpy as np

        sql = self._sql(
            "SELECT step, value, wall_time FROM metrics WHERE run_id = ? AND key = ? "
            "ORDER BY step, id"
        )
        rows = self._fetch_raw(sql, (run_id, key))
        if not rows:
            empty = np.empty(0, dtype=np.float64)
            return np.empty(0, dtype=np.int64), empty, empty
        arr = np.array(rows, dtype=np.float64)
        return arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2]

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
        from workbench_tracker.downsample import downsample_arrays

        if min_step is not None or max_step is not None:
            return super().metric_series_downsampled(
                run_id, key, points=points, method=method, min_step=min_step, max_step=max_step
            )
        if self._from_blocks(run_id, key, min_points=points * BLOCK_STEPS // 4):
            steps, values, times = self._block_candidates(run_id, key)
        else:
            steps, values, times = self.metric_arrays(run_id, key)
        idx = downsample_arrays(steps, values, points, method)
        return Series(steps[idx].tolist(), values[idx].tolist(), times[idx].tolist())

    def metric_envelope(
        self,
        run_id: str,
        key: str,
        *,
        buckets: int = 500,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Envelope:
        """The min/max band (see :meth:`Store.metric_envelope`). A series of at least
        ``buckets * BLOCK_STEPS`` points is read from its block summaries: buckets are then
        whole blocks, and their min/max are exact over every point of those blocks."""
        from workbench_tracker.downsample import envelope_arrays

        if buckets < 1:
            raise ValueError("buckets: must be at least 1")
        if min_step is not None or max_step is not None:
            return super().metric_envelope(
                run_id, key, buckets=buckets, min_step=min_step, max_step=max_step
            )
        if self._from_blocks(run_id, key, min_points=buckets * BLOCK_STEPS):
            return self._block_envelope(run_id, key, buckets)
        steps, values, times = self.metric_arrays(run_id, key)
        first, last, mins, maxs = envelope_arrays(values, buckets)
        return Envelope.from_arrays(steps, times, first, last, mins, maxs)

    def _from_blocks(self, run_id: str, key: str, *, min_points: int) -> bool:
        """Whether a whole-series read of the key should come from its block summaries: it has
        at least ``min_points`` points (shorter series are cheaper to read row by row) and the
        summaries account for every one of them. A database written before summaries existed
        (or by a tool that skipped them) has fewer; reads then take the raw rows, slower but
        complete."""
        counted = self._fetch_raw(
            self._sql("SELECT count FROM metric_keys WHERE run_id = ? AND key = ?"), (run_id, key)
        )
        count = int(counted[0][0]) if counted else 0
        if count < min_points or count == 0:
            return False
        covered = self._fetch_raw(
            self._sql(
                "SELECT COALESCE(SUM(count), 0) FROM metric_blocks WHERE run_id = ? AND key = ?"
            ),
            (run_id, key),
        )
        return int(covered[0][0]) == count

    def _block_envelope(self, run_id: str, key: str, buckets: int) -> Envelope:
        """:meth:`metric_envelope` from ``metric_blocks``: one row per block, buckets of whole
        blocks holding about equal point counts."""
        import numpy as np

        from workbench_tracker.downsample import envelope_arrays

        sql = self._sql(
            "SELECT block, count, first_step, first_time, last_step, last_time, min_value, "
            "max_value FROM metric_blocks WHERE run_id = ? AND key = ? ORDER BY block"
        )
        rows = self._fetch_raw(sql, (run_id, key))
        if not rows:
            return Envelope()
        arr = np.array(rows, dtype=np.float64)  # NULL (an all-NaN block) -> NaN
        block_min, block_max = arr[:, 6], arr[:, 7]
        # Block summaries keep +/-Inf as min/max; the band wants the finite extremes, so those
        # (rare) blocks are read again point by point.
        odd = np.flatnonzero(np.isinf(block_min) | np.isinf(block_max))
        if len(odd):
            q = self._sql(
                "SELECT value FROM metrics WHERE run_id = ? AND key = ? AND step >= ? AND step < ?"
            )
            for i in odd.tolist():
                lo = int(arr[i, 0]) * BLOCK_STEPS
                raw = np.array(
                    [v for (v,) in self._fetch_raw(q, (run_id, key, lo, lo + BLOCK_STEPS))],
                    dtype=np.float64,
                )
                finite = raw[np.isfinite(raw)]
                block_min[i] = finite.min() if len(finite) else math.nan
                block_max[i] = finite.max() if len(finite) else math.nan
        first, last, mins, maxs = envelope_arrays(
            block_min, buckets, maxs=block_max, counts=arr[:, 1].astype(np.int64)
        )
        return Envelope(
            steps=arr[first, 2].astype(np.int64).tolist(),
            last_steps=arr[last, 4].astype(np.int64).tolist(),
            mins=mins.tolist(),
            maxs=maxs.tolist(),
            times=arr[first, 3].tolist(),
            last_times=arr[last, 5].tolist(),
        )

    def _block_candidates(self, run_id: str, key: str) -> tuple[Any, Any, Any]:
        """First/min/max/last of every block plus every NaN point: the only points a
        downsampling to at most ``count * 4 / BLOCK_STEPS`` points can need.

        Times of min/max points are interpolated within their block (blocks keep the wall
        time of their first and last point only).
        """
        import numpy as np

        sql = self._sql(
            "SELECT block, nan_count, first_step, first_value, first_time, last_step, "
            "last_value, last_time, min_step, min_value, max_step, max_value "
            "FROM metric_blocks WHERE run_id = ? AND key = ? ORDER BY block"
        )
        blocks = self._fetch_raw(sql, (run_id, key))
        pts: dict[int, tuple[float, float]] = {}
        nan_blocks: list[int] = []
        for b, nan_count, fs, fv, ft, ls, lv, lt, mins, minv, maxs, maxv in blocks:
            nan = math.nan
            pts[fs] = (nan if fv is None else fv, ft)
            pts[ls] = (nan if lv is None else lv, lt)
            span = (ls - fs) or 1
            if mins is not None:
                pts.setdefault(mins, (minv, ft + (lt - ft) * (mins - fs) / span))
            if maxs is not None:
                pts.setdefault(maxs, (maxv, ft + (lt - ft) * (maxs - fs) / span))
            if nan_count:
                nan_blocks.append(b)
        if nan_blocks:
            q = self._sql(
                "SELECT step, wall_time FROM metrics WHERE run_id = ? AND key = ? "
                "AND step >= ? AND step < ? AND (value IS NULL OR value = 'NaN')"
            )
            for b in nan_blocks[:1000]:
                lo = b * BLOCK_STEPS
                for step, t in self._fetch_raw(q, (run_id, key, lo, lo + BLOCK_STEPS)):
                    pts[step] = (math.nan, t)
        order = sorted(pts)
        steps = np.array(order, dtype=np.int64)
        vt = np.array([pts[s] for s in order], dtype=np.float64).reshape(-1, 2)
        return steps, vt[:, 0], vt[:, 1]

    # -- media and alerts ---------------------------------------------------------------------
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
        def work() -> MediaInfo:
            with self.session() as s:
                if s.get(Run, run_id) is None:
                    raise RunNotFoundError(f"run {run_id!r} not found")
                row = Media(
                    run_id=run_id,
                    key=key,
                    step=step,
                    mime=mime,
                    caption=caption,
                    width=width,
                    height=height,
                    data=data,
                )
                s.add(row)
                s.flush()
                return MediaInfo(row.id, run_id, key, step, mime, caption, width, height)

        return self._retry(work)

    def list_media(self, run_id: str, key: str | None = None) -> list[MediaInfo]:
        cols = (
            Media.id,
            Media.run_id,
            Media.key,
            Media.step,
            Media.mime,
            Media.caption,
            Media.width,
            Media.height,
        )
        stmt = select(*cols).where(Media.run_id == run_id)
        if key is not None:
            stmt = stmt.where(Media.key == key)
        with self.session() as s:
            rows = s.execute(stmt.order_by(Media.key, Media.step, Media.id)).all()
            return [MediaInfo(*r) for r in rows]

    def get_media(self, media_id: int) -> tuple[MediaInfo, bytes]:
        with self.session() as s:
            r = s.get(Media, media_id)
            if r is None:
                raise KeyError(f"media {media_id} not found")
            info = MediaInfo(r.id, r.run_id, r.key, r.step, r.mime, r.caption, r.width, r.height)
            return info, bytes(r.data)

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
        def work() -> AlertInfo:
            with self.session() as s:
                row = Alert(
                    run_id=run_id,
                    key=key,
                    kind=kind,
                    message=message,
                    step=step,
                    value=None if value is not None and math.isnan(value) else value,
                    value_nan=value is not None and math.isnan(value),
                    created_at=datetime.now(UTC),
                )
                s.add(row)
                s.flush()
                return self._alert(row, value)

        return self._retry(work)

    @staticmethod
    def _alert(row: Alert, value: float | None = None) -> AlertInfo:
        return AlertInfo(
            row.id,
            row.run_id,
            row.key,
            row.kind,
            row.message,
            row.step,
            math.nan if row.value_nan else (value if value is not None else row.value),
            _utc(row.created_at),
        )

    def list_alerts(
        self, run_id: str | None = None, *, project: str | None = None, limit: int = 1000
    ) -> list[AlertInfo]:
        stmt = select(Alert)
        if run_id is not None:
            stmt = stmt.where(Alert.run_id == run_id)
        if project is not None:
            stmt = stmt.where(Alert.run_id.in_(select(Run.id).where(Run.project == project)))
        with self.session() as s:
            rows = s.scalars(stmt.order_by(Alert.id.desc()).limit(limit))
            return [self._alert(r) for r in rows]

    def close(self) -> None:
        self.engine.dispose()
