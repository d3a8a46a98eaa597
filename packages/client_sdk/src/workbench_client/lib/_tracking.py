"""Optional hook into workbench-tracker: log each training step's loss and learning rate.

The tracker is an optional dependency: it is imported only when a TrainingClient asks for the
active run, and its absence is not an error (the hook just does nothing). Coordination is only
through the tracker's public API: ``run.log(dict, step=...)`` and its module-level active run.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger("workbench_client")

_ACTIVE_RUN_NAMES = ("active_run", "get_active_run", "current_run", "get_run")


def active_tracker_run() -> Any | None:
    """The tracker's active run, or None when the tracker is not installed or no run is active."""
    try:
        wt = importlib.import_module("workbench_tracker")
    except ImportError:
        return None
    for name in _ACTIVE_RUN_NAMES:
        attr = getattr(wt, name, None)
        if callable(attr):
            try:
                run = attr()
            except Exception:  # a tracker without an active run may raise; treat as none
                run = None
            if run is not None:
                return run
    run = getattr(wt, "run", None)
    if run is not None and callable(getattr(run, "log", None)):
        return run
    return None


class StepLogger:
    """Collects forward_backward losses and logs them, with the learning rate, per optim step.

    Args:
        run: a tracker run (anything with ``log(dict, step=...)``); None = look for the active
            run at each step, so a run started after the client was built is picked up.
        enabled: False turns logging off entirely.
    """

    def __init__(self, run: Any | None = None, *, enabled: bool = True) -> None:
        self._run = run
        self.enabled = enabled
        self._losses: list[float] = []
        self._warned = False

    def record_loss(self, loss: float) -> None:
        self._losses.append(float(loss))

    def on_step(self, step: int, learning_rate: float | None) -> None:
        """Log the mean loss since the previous step and the learning rate at ``step``."""
        losses, self._losses = self._losses, []
        if not self.enabled:
            return
        run = self._run if self._run is not None else active_tracker_run()
        if run is None:
            return
        metrics: dict[str, float] = {}
        if losses:
            metrics["loss"] = sum(losses) / len(losses)
        if learning_rate is not None:
            metrics["learning_rate"] = float(learning_rate)
        if not metrics:
            return
        try:
            run.log(metrics, step=step)
        except Exception as exc:  # tracking must never break training
            if not self._warned:
                log.warning("could not log to the tracker run: %s", exc)
                self._warned = True


__all__ = ["StepLogger", "active_tracker_run"]
