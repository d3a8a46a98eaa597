"""Where Workbench keeps its files, and the settings base class every package extends.

Why shared: the tracker's SQLite file, serving's tiny models, the agent's sessions and the dev
server all live under one ``WORKBENCH_HOME`` so that one env var moves (or isolates, in tests)
all of it; and every package reads its settings from ``WORKBENCH_*`` env vars the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WorkbenchSettings", "models_dir", "workbench_home", "workbench_path"]

DEFAULT_HOME = "~/.workbench"


def _dir_from_env(var: str, default: Path, create: bool) -> Path:
    raw = os.environ.get(var, "").strip()
    path = Path(os.path.expandvars(raw)).expanduser() if raw else default
    path = path.resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def workbench_home(create: bool = True) -> Path:
    """The Workbench home directory: ``$WORKBENCH_HOME`` or ``~/.workbench``.

    Read from the environment on every call (tests monkeypatch it).

    Args:
        create: make the directory (and parents) if missing.
    """
    return _dir_from_env("WORKBENCH_HOME", Path(DEFAULT_HOME).expanduser(), create)


def workbench_path(*parts: str, create: bool = True) -> Path:
    """A directory under the home, e.g. ``workbench_path("tracker")``; created on demand."""
    path = workbench_home(create=create).joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir(create: bool = True) -> Path:
    """Where local models live: ``$WORKBENCH_MODELS_DIR`` or ``WORKBENCH_HOME/models``.

    Separate from the home so CI can share one tiny-model cache across test sessions that each
    have their own temporary home.
    """
    return _dir_from_env("WORKBENCH_MODELS_DIR", workbench_home(create=create) / "models", create)


class WorkbenchSettings(BaseSettings):
    """Base class for package settings, read from ``WORKBENCH_*`` environment variables.

    Subclass it and add fields; narrow the prefix per package if you like, e.g.
    ``model_config = SettingsConfigDict(env_prefix="WORKBENCH_TRACKER_")``. Nested models read
    ``WORKBENCH_A__B``. Unknown variables are ignored because all packages share the prefix.
    """

    model_config = SettingsConfigDict(
        env_prefix="WORKBENCH_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )
