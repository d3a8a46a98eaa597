"""workbench-tracker: local-first experiment tracking (work in progress)."""

from __future__ import annotations

from workbench_tracker.store import get_store

__all__ = ["get_store"]
