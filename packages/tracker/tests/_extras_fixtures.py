"""Shared helpers for the tracker-extras tests (artifacts, export, monitors, system, remote)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine


def make_engine(tmp_path: Path) -> Engine:
    """A real SQLite database file with the whole tracker schema (core + extras)."""
    from workbench_tracker.artifacts import schema as _artifact_schema  # noqa: F401
    from workbench_tracker.store.schema import Base

    engine = create_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    Base.metadata.create_all(engine)
    return engine


@dataclass
class EngineStore:
    """The part of the tracker store the extras rely on: an engine and an alerts table."""

    engine: Engine
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def add_alert(self, run_id: str, kind: str, message: str, **fields: Any) -> None:
        # Same signature as Store.add_alert in workbench_tracker.store.base.
        self.alerts.append({"run_id": run_id, "kind": kind, "message": message, **fields})


@dataclass
class RunHandle:
    """What artifacts/monitors need from a Run: id, project, store, log hooks."""

    id: str
    project: str
    store: EngineStore
    log_hooks: list[Any] = field(default_factory=list)
    finish_hooks: list[Any] = field(default_factory=list)
    logged: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        self.logged.append((dict(data), step))
        for hook in self.log_hooks:
            hook(data, step)

    def finish(self) -> None:
        for hook in self.finish_hooks:
            hook()


def seed_runs(engine: Engine, project: str = "proj", n_runs: int = 2, steps: int = 20) -> list[str]:
    """Write runs with known metrics (including a NaN and an Inf) through the extras writer."""
    from workbench_tracker.exporting import RunRecord, write_run

    ids = []
    t0 = time.time()
    for i in range(n_runs):
        rid = f"run{i}"
        metrics = [("loss", s, 1.0 / (s + 1) + i, t0 + s) for s in range(steps)]
        metrics += [("acc", s, s / steps, t0 + s) for s in range(steps)]
        if i == 0:
            metrics += [("weird", 0, math.nan, t0), ("weird", 1, math.inf, t0 + 1)]
        write_run(
            engine,
            RunRecord(
                id=rid,
                project=project,
                name=f"name-{i}",
                config={"lr": 0.1 * (i + 1), "layers": [1, 2]},
                tags=["even"] if i % 2 == 0 else ["odd"],
                metrics=metrics,
            ),
        )
        ids.append(rid)
    return ids


def free_port() -> int:
    """A port that was free a moment ago on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server for an ASGI app on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
