"""The tracker viewer (FastAPI app + web UI). ``create_app(store=None)`` builds it."""

from __future__ import annotations

from workbench_tracker.viewer.app import STATIC_DIR, ApiError, create_app

__all__ = ["STATIC_DIR", "ApiError", "create_app"]
