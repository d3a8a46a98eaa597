"""Tracker stores: the ``Store`` interface and its SQLAlchemy and HTTP implementations.

``get_store(url)`` picks the implementation from the URL: ``http(s)://`` talks to a tracker
viewer's ingest API, anything else is a SQLAlchemy URL (default: SQLite under
``WORKBENCH_HOME``). ``WORKBENCH_TRACKER_URL`` sets the default for a whole process tree.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from workbench_tracker.store.base import (
    RUN_STATUSES,
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
    StoreError,
)

if TYPE_CHECKING:
    from workbench_tracker.store.http import HTTPStore
    from workbench_tracker.store.sql import SQLStore

__all__ = [
    "RUN_STATUSES",
    "AlertInfo",
    "Envelope",
    "HTTPStore",
    "MediaInfo",
    "MetricRow",
    "ProjectInfo",
    "RunInfo",
    "RunNotFoundError",
    "SQLStore",
    "Series",
    "Store",
    "StoreBusyError",
    "StoreError",
    "get_store",
]

_cache: dict[str, Store] = {}


def get_store(url: str | None = None, *, cached: bool = True) -> Store:
    """The store for ``url`` (default ``WORKBENCH_TRACKER_URL``, else the SQLite default).

    Stores are cached per URL so every run in a process shares one engine / connection pool.
    """
    from workbench_tracker.store.sql import default_sqlite_url

    url = url or os.environ.get("WORKBENCH_TRACKER_URL") or default_sqlite_url()
    if cached and url in _cache:
        return _cache[url]
    store: Store
    if url.startswith(("http://", "https://")):
        from workbench_tracker.store.http import HTTPStore

        store = HTTPStore(url)
    else:
        from workbench_tracker.store.sql import SQLStore

        store = SQLStore(url)
    if cached:
        _cache[url] = store
    return store


def __getattr__(name: str) -> Any:
    if name == "SQLStore":
        from workbench_tracker.store.sql import SQLStore

        return SQLStore
    if name == "HTTPStore":
        from workbench_tracker.store.http import HTTPStore

        return HTTPStore
    raise AttributeError(name)
