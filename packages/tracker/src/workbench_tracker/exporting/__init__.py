"""Export runs (CSV, JSON, Parquet, TensorBoard), archive whole projects, import archives and
TensorBoard log directories."""

from __future__ import annotations

from workbench_tracker.exporting._archive import (
    ARCHIVE_FORMAT,
    ArchiveError,
    export_project,
    import_archive,
    import_tensorboard,
)
from workbench_tracker.exporting._formats import (
    FORMATS,
    export_csv,
    export_json,
    export_parquet,
    export_runs,
    export_tensorboard,
)
from workbench_tracker.exporting._runs import RunRecord, deterministic_run_id, load_runs, write_run

__all__ = [
    "ARCHIVE_FORMAT",
    "FORMATS",
    "ArchiveError",
    "RunRecord",
    "deterministic_run_id",
    "export_csv",
    "export_json",
    "export_parquet",
    "export_project",
    "export_runs",
    "export_tensorboard",
    "import_archive",
    "import_tensorboard",
    "load_runs",
    "write_run",
]
