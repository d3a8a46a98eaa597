"""Run exports: CSV, JSON, Parquet and TensorBoard event files.

CSV and Parquet hold one "long" table (one row per metric point) because that is what pandas,
DuckDB and spreadsheets pivot most easily; JSON keeps each run's config and metrics together.
TensorBoard files are written with tensorboard's own ``EventFileWriter`` (no torch, no
TensorFlow), one sub-directory per run, so ``tensorboard --logdir`` shows every run side by side.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench_tracker.exporting._runs import RunRecord

__all__ = [
    "FORMATS",
    "export_csv",
    "export_json",
    "export_parquet",
    "export_runs",
    "export_tensorboard",
]

FORMATS = ("csv", "json", "parquet", "tensorboard")
_COLUMNS = ["run_id", "run_name", "project", "key", "step", "value", "wall_time"]


def _json_value(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/Inf; keep them readable


def export_csv(runs: Sequence[RunRecord], dest: Path) -> Path:
    """One row per point: run_id, run_name, project, key, step, value, wall_time."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_COLUMNS)
        for r in runs:
            for k, st, v, wt in r.metrics:
                w.writerow([r.id, r.name, r.project, k, st, repr(v), repr(wt)])
    return dest


def export_json(runs: Sequence[RunRecord], dest: Path) -> Path:
    """``{"runs": [{id, name, config, ..., "metrics": {key: [[step, value, wall_time]]}}]}``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    out: list[dict[str, Any]] = []
    for r in runs:
        series: dict[str, list[list[Any]]] = {}
        for k, st, v, wt in r.metrics:
            series.setdefault(k, []).append([st, _json_value(v), wt])
        out.append({**r.meta(), "metrics": series})
    dest.write_text(
        json.dumps({"format": "workbench-runs", "version": 1, "runs": out}, indent=1, default=str)
    )
    return dest


def export_parquet(runs: Sequence[RunRecord], dest: Path) -> Path:
    """The long table as Parquet (float64 values keep NaN/Inf exactly)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest.parent.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for r in runs:
        for k, st, v, wt in r.metrics:
            cols["run_id"].append(r.id)
            cols["run_name"].append(r.name)
            cols["project"].append(r.project)
            cols["key"].append(k)
            cols["step"].append(st)
            cols["value"].append(v)
            cols["wall_time"].append(wt)
    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("run_name", pa.string()),
            ("project", pa.string()),
            ("key", pa.string()),
            ("step", pa.int64()),
            ("value", pa.float64()),
            ("wall_time", pa.float64()),
        ]
    )
    meta = {b"workbench.runs": json.dumps([r.meta() for r in runs], default=str).encode()}
    table = pa.table(cols, schema=schema.with_metadata(meta))
    pq.write_table(table, dest)
    return dest


def _safe_dirname(r: RunRecord) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{r.name}-{r.id}")[:120]


def export_tensorboard(runs: Sequence[RunRecord], dest_dir: Path) -> list[Path]:
    """Write each run's scalars (and its config as a text summary) as TensorBoard events."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    written = []
    for r in runs:
        logdir = dest_dir / _safe_dirname(r)
        logdir.mkdir(parents=True, exist_ok=True)
        writer = EventFileWriter(str(logdir))
        try:
            if r.config:
                text = json.dumps(r.config, indent=2, default=str)
                tensor = tensor_pb2.TensorProto(
                    dtype=7,  # DT_STRING
                    string_val=[text.encode()],
                    tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                )
                meta = summary_pb2.SummaryMetadata(
                    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
                )
                summ = summary_pb2.Summary(
                    value=[summary_pb2.Summary.Value(tag="config", tensor=tensor, metadata=meta)]
                )
                writer.add_event(event_pb2.Event(step=0, wall_time=0.0, summary=summ))
            for k, st, v, wt in r.metrics:
                summ = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)])
                writer.add_event(event_pb2.Event(step=st, wall_time=wt, summary=summ))
        finally:
            writer.close()
        written.append(logdir)
    return written


def export_runs(runs: Sequence[RunRecord], fmt: str, dest: Path) -> Path:
    """Export in ``fmt``; for tensorboard ``dest`` is a directory.

    Raises:
        ValueError: for an unknown format (the message names the ``format`` field).
    """
    if fmt == "csv":
        return export_csv(runs, dest)
    if fmt == "json":
        return export_json(runs, dest)
    if fmt == "parquet":
        return export_parquet(runs, dest)
    if fmt == "tensorboard":
        export_tensorboard(runs, dest)
        return dest
    raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
