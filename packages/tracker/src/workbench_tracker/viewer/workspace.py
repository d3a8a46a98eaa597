"""Read routes behind the runs page's workspace: run-name search, the keys runs carry, and
metric curves of many runs grouped by a config value (mean line, min/max band).

A W&B user groups runs by a hyperparameter and reads one mean curve per value with the spread
of its seeds around it. Aggregating on the server keeps the page to one request per panel
whatever the number of runs, and keeps the arithmetic testable without a browser.

Runs are aligned by step: each key's step range is cut into at most ``points`` equal buckets;
a run contributes its mean over each bucket it has points in, and a group's mean/min/max are
taken over its runs' bucket means (a run that logged more often does not weigh more).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Query, Request

from workbench_tracker._validate import MAX_KEY_LENGTH
from workbench_tracker.store.base import RUN_STATUSES, RunInfo, Store
from workbench_tracker.viewer.app import ApiError, _parse_query_value

__all__ = ["MAX_GROUP_RUNS", "group_curves", "router", "search_runs"]

# A group chart reads every run's series: bounded so one request stays a few hundred queries.
MAX_GROUP_RUNS = 200
MAX_GROUP_KEYS = 10
_SCAN_PAGE = 1000
_FILTERS = ("project", "tag", "status", "search")


def _matches(run: RunInfo, needle: str) -> bool:
    return needle in run.name.casefold() or needle in run.id.casefold()


def search_runs(
    store: Store,
    search: str,
    *,
    limit: int,
    offset: int,
    **filters: Any,
) -> tuple[list[RunInfo], int]:
    """Runs whose name or id contains ``search`` (case-insensitive), in ``list_runs`` order.

    The store has no text filter, so this pages through ``list_runs`` with the other filters
    applied by the store and keeps the matches; the total counts every match.
    """
    needle = search.casefold()
    hits: list[RunInfo] = []
    total = 0
    start = 0
    while True:
        page, count = store.list_runs(limit=_SCAN_PAGE, offset=start, **filters)
        for run in page:
            if _matches(run, needle):
                if offset <= total < offset + limit:
                    hits.append(run)
                total += 1
        start += len(page)
        if not page or start >= count:
            return hits, total


def _filters_from_query(request: Request, extra: Iterable[str]) -> tuple[dict[str, Any], str]:
    """The runs-table filters of a workspace route (``project``, ``tag``, ``status``,
    ``config.x``, ``search``) as ``list_runs`` keywords plus the search text; any other query
    parameter (besides ``extra``) is a 422 naming it."""
    allowed = {*_FILTERS, *extra}
    config: dict[str, Any] = {}
    tags: list[str] = []
    out: dict[str, Any] = {}
    search = ""
    for k, v in request.query_params.multi_items():
        if k.startswith("config."):
            if len(k) == len("config."):
                raise ApiError(422, "config.: needs a key, e.g. config.lr=0.1", param=k)
            config[k[len("config.") :]] = _parse_query_value(v)
        elif k not in allowed:
            raise ApiError(422, f"{k}: unknown query parameter", param=k)
        elif k == "tag":
            tags.append(v)
        elif k == "status":
            if v not in RUN_STATUSES:
                raise ApiError(422, f"status: must be one of {', '.join(RUN_STATUSES)}", param=k)
            out["status"] = v
        elif k == "project":
            out["project"] = v
        elif k == "search":
            search = v
    return {**out, "tags": tags, "config": config}, search


def _scan(
    store: Store, filters: Mapping[str, Any], search: str, cap: int
) -> tuple[list[RunInfo], int]:
    """The first ``cap`` matching runs (newest first) and how many match in all."""
    if search:
        return search_runs(store, search, limit=cap, offset=0, **filters)
    return store.list_runs(limit=cap, offset=0, **filters)


def _flat_keys(obj: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for k, v in obj.items():
        if isinstance(v, Mapping) and v:
            yield from _flat_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def _dig(obj: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    if dotted in obj:
        return True, obj[dotted]
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _order(value: Any) -> tuple[int, Any]:
    if value is None:
        return (3, "")
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, int | float):
        return (0, float(value))
    return (2, json.dumps(value, sort_keys=True, default=str))


def group_curves(
    series_by_run: Mapping[str, tuple[list[int], list[float]]],
    groups: Mapping[str, list[str]],
    *,
    points: int,
) -> dict[str, dict[str, list[float]]]:
    """Per group, the mean/min/max over its runs of each step bucket (see the module doc).

    Args:
        series_by_run: run id -> (steps, values) of one metric.
        groups: group label -> run ids in it.
        points: the most buckets the key's step range is cut into.

    Returns:
        group label -> ``{"steps", "mean", "min", "max", "count"}`` over the buckets any of its
        runs has a finite value in (``steps`` is the mean step of the points in the bucket);
        groups without any point are left out.
    """
    firsts = [s[0] for s, _ in series_by_run.values() if s]
    if not firsts:
        return {}
    lo = min(firsts)
    hi = max(s[-1] for s, _ in series_by_run.values() if s)
    width = max(1, math.ceil((hi - lo + 1) / points))
    # run -> bucket -> (mean step, mean value) over the run's finite points in it
    per_run: dict[str, dict[int, tuple[float, float]]] = {}
    for rid, (steps, values) in series_by_run.items():
        acc: dict[int, list[float]] = {}
        for step, value in zip(steps, values, strict=True):
            if not math.isfinite(value):
                continue
            cell = acc.setdefault((step - lo) // width, [0.0, 0.0, 0.0])
            cell[0] += step
            cell[1] += value
            cell[2] += 1
        per_run[rid] = {b: (c[0] / c[2], c[1] / c[2]) for b, c in acc.items()}
    out: dict[str, dict[str, list[float]]] = {}
    for label, rids in groups.items():
        buckets: dict[int, list[tuple[float, float]]] = {}
        for rid in rids:
            for b, pair in per_run.get(rid, {}).items():
                buckets.setdefault(b, []).append(pair)
        if not buckets:
            continue
        curve: dict[str, list[float]] = {"steps": [], "mean": [], "min": [], "max": [], "count": []}
        for b in sorted(buckets):
            pairs = buckets[b]
            vals = [v for _, v in pairs]
            curve["steps"].append(sum(s for s, _ in pairs) / len(pairs))
            curve["mean"].append(sum(vals) / len(vals))
            curve["min"].append(min(vals))
            curve["max"].append(max(vals))
            curve["count"].append(len(vals))
        out[label] = curve
    return out


router = APIRouter(prefix="/api/workspace", tags=["workspace"])

# The runs-table filters, declared so the OpenAPI schema lists them (``config.<key>=value``
# filters are read from the query string: their names are open-ended).
_Project = Query(default=None, max_length=200, description="project name")
_Tag = Query(default=[], description="runs carrying every given tag")
_Status = Query(default=None, description=f"one of {', '.join(RUN_STATUSES)}")
_Search = Query(default=None, max_length=200, description="part of the run's name or id")


@router.get("/keys")
def workspace_keys(
    request: Request,
    project: str | None = _Project,
    tag: list[str] = _Tag,
    status: str | None = _Status,
    search: str | None = _Search,
) -> dict[str, Any]:
    """The config, summary and metric keys of the runs matching the runs-table filters
    (``project``, ``tag``, ``status``, ``config.x``, ``search``): what the column picker,
    group-by and panel choosers offer. Metric keys are read from the first
    ``MAX_GROUP_RUNS`` matches."""
    store: Store = request.app.state.store
    filters, search = _filters_from_query(request, ())  # the declared ones, and config.<key>
    runs, total = _scan(store, filters, search, MAX_GROUP_RUNS)
    config: set[str] = set()
    summary: set[str] = set()
    metrics: set[str] = set()
    for r in runs:
        config.update(_flat_keys(r.config))
        summary.update(_flat_keys(r.summary))
        metrics.update(store.metric_keys(r.id))
    return {
        "config": sorted(config),
        "summary": sorted(summary),
        "metrics": sorted(metrics),
        "runs_scanned": len(runs),
        "total": total,
    }


@router.get("/groups")
def workspace_groups(
    request: Request,
    keys: str = Query(min_length=1, max_length=2000, description="comma-separated metric keys"),
    group_by: str | None = Query(
        default=None, max_length=MAX_KEY_LENGTH, description="config key; none: one line a run"
    ),
    points: int = Query(default=200, ge=2, le=2000),
    project: str | None = _Project,
    tag: list[str] = _Tag,
    status: str | None = _Status,
    search: str | None = _Search,
) -> dict[str, Any]:
    """Curves of the matching runs (first ``MAX_GROUP_RUNS``, newest first) for each of
    ``keys``, one per value of ``config.<group_by>`` with the mean over its runs and their
    min/max (see :func:`group_curves`); without ``group_by`` one curve a run.

    Returns ``{"group_by", "groups": [{"label", "value", "runs"}], "curves": {key: {label:
    {"steps", "mean", "min", "max", "count"}}}, "runs_used", "total"}``.
    """
    store: Store = request.app.state.store
    filters, search = _filters_from_query(request, ("keys", "group_by", "points"))  # + config.*
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    if not wanted or len(wanted) > MAX_GROUP_KEYS:
        raise ApiError(422, f"keys: give 1..{MAX_GROUP_KEYS} metric keys", param="keys")
    for k in wanted:
        if len(k) > MAX_KEY_LENGTH:
            raise ApiError(422, f"keys: {k[:40]!r}... is too long", param="keys")
    runs, total = _scan(store, filters, search, MAX_GROUP_RUNS)
    members: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    if group_by:
        keyed: dict[str, tuple[Any, list[str]]] = {}
        for r in runs:
            found, value = _dig(r.config, group_by)
            v = value if found else None
            ident = json.dumps(v, sort_keys=True, default=str)
            keyed.setdefault(ident, (v, []))[1].append(r.id)
        for _, (v, rids) in sorted(keyed.items(), key=lambda kv: _order(kv[1][0])):
            label = f"{group_by}={'none' if v is None else (v if isinstance(v, str) else json.dumps(v))}"
            members[label] = rids
            values[label] = v
    else:
        for r in runs:
            label = r.name if sum(x.name == r.name for x in runs) == 1 else f"{r.name} ({r.id})"
            members[label] = [r.id]
            values[label] = r.id
    curves: dict[str, Any] = {}
    for key in wanted:
        series = {}
        for r in runs:
            s = store.metric_series_downsampled(r.id, key, points=points)
            if len(s):
                series[r.id] = (s.steps, s.values)
        curves[key] = group_curves(series, members, points=points)
    return {
        "group_by": group_by or None,
        "groups": [{"label": g, "value": values[g], "runs": rids} for g, rids in members.items()],
        "curves": curves,
        "runs_used": len(runs),
        "total": total,
    }
