"""workbench-tracker: local-first experiment tracking.

    import workbench_tracker as wt

    with wt.init(project="mnist", config={"lr": 0.1}) as run:
        for step in range(1000):
            wt.log({"loss": loss}, step=step)
        run.summary["best"] = 0.98

``log()`` only validates and enqueues; a writer thread batches points into the store (SQLite
under ``WORKBENCH_HOME`` by default, PostgreSQL, or a remote tracker over HTTP). Read them back
with ``wt.Api()`` or the viewer (``workbench tracker ui``).

Importing this package is light: no torch, no web framework, no SQLAlchemy until a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench_tracker._run import Image, Run, finish, get_active_run, init, log
from workbench_tracker._writer import WriterError
from workbench_tracker.api import Api, ApiRun
from workbench_tracker.store import (
    AlertInfo,
    Envelope,
    MediaInfo,
    ProjectInfo,
    RunInfo,
    RunNotFoundError,
    Series,
    Store,
    StoreBusyError,
    StoreError,
    get_store,
)

if TYPE_CHECKING:
    from workbench_tracker.store.http import HTTPStore
    from workbench_tracker.store.sql import SQLStore
    from workbench_tracker.viewer import create_app

__all__ = [
    "AlertInfo",
    "Api",
    "ApiRun",
    "Envelope",
    "HTTPStore",
    "Image",
    "MediaInfo",
    "ProjectInfo",
    "Run",
    "RunInfo",
    "RunNotFoundError",
    "SQLStore",
    "Series",
    "Store",
    "StoreBusyError",
    "StoreError",
    "WriterError",
    "create_app",
    "finish",
    "get_active_run",
    "get_store",
    "init",
    "log",
    "run",
]


def __getattr__(name: str) -> Any:
    # ``wt.run`` is the active run (None when there is none), read at access time.
    if name == "run":
        return get_active_run()
    if name == "SQLStore":
        from workbench_tracker.store.sql import SQLStore

        return SQLStore
    if name == "HTTPStore":
        from workbench_tracker.store.http import HTTPStore

        return HTTPStore
    if name == "create_app":
        from workbench_tracker.viewer import create_app

        return create_app
    raise AttributeError(f"module 'workbench_tracker' has no attribute {name!r}")
