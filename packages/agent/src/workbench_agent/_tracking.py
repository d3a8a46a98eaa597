"""Each agent run logged as a tracker run: steps, tool calls, latencies and tokens.

Why: the tracker is where the workbench compares things over time, and an agent run is an
experiment too (which model, how many steps, how slow were the tools). Logging is optional: with
the tracker not installed, or ``WORKBENCH_AGENT_TRACK=0``, runs are simply not logged, and a
tracker failure never breaks a run (the runtime swallows observer errors).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ._loop import RunResult
from ._runtime import RunHandle, RunObserver

__all__ = ["TrackerRunObserver", "tracker_observer"]


class TrackerRunObserver(RunObserver):
    """Logs one agent run to a tracker run, step by step."""

    def __init__(self, handle: RunHandle, *, store: Any = None, project: str = "agent") -> None:
        import workbench_tracker as wt

        self.run = wt.init(
            project=project,
            name=handle.id,
            config={"session_id": handle.session_id, "prompt": handle.prompt[:500]},
            tags=["agent"],
            store=store,
            capture_env=False,
        )
        self.step = 0
        self.tool_calls = 0
        self.tool_errors = 0

    def on_event(self, type: str, data: dict[str, Any]) -> None:
        if type == "model_output":
            self.step = int(data.get("step", self.step + 1))
            usage = data.get("usage") or {}
            self.run.log(
                {
                    "llm_latency_ms": float(data.get("duration_ms", 0.0)),
                    "input_tokens": float(usage.get("input_tokens", 0)),
                    "output_tokens": float(usage.get("output_tokens", 0)),
                    "tool_calls_requested": float(len(data.get("tool_calls") or [])),
                },
                step=self.step,
            )
        elif type in ("tool_end", "tool_error"):
            self.tool_calls += 1
            self.tool_errors += type == "tool_error"
            self.run.log(
                {
                    "tool_latency_ms": float(data.get("duration_ms", 0.0)),
                    f"tool/{data.get('name', 'unknown')}_ms": float(data.get("duration_ms", 0.0)),
                    "tool_error": float(type == "tool_error"),
                },
                step=max(self.step, 1),
            )

    def close(self, result: RunResult) -> None:
        summary = self.run.summary
        summary["status"] = result.status
        summary["steps"] = result.steps
        summary["tool_calls"] = self.tool_calls
        summary["tool_errors"] = self.tool_errors
        summary["input_tokens"] = result.usage.input_tokens
        summary["output_tokens"] = result.usage.output_tokens
        summary["duration_ms"] = round(result.duration_s * 1000, 3)
        if result.final is not None:
            summary["final"] = result.final[:1000]
        failed = result.status in ("error", "max_steps")
        self.run.finish("failed" if failed else "finished", error=result.error if failed else None)


def tracker_observer(
    store: Any = None, project: str = "agent"
) -> Callable[[RunHandle], RunObserver | None] | None:
    """A per-run observer factory for ``AgentRuntime``, or None when tracking is off."""
    if os.environ.get("WORKBENCH_AGENT_TRACK", "1").lower() in ("0", "false", "no", "off"):
        return None
    try:
        import workbench_tracker  # noqa: F401
    except ImportError:
        return None

    def factory(handle: RunHandle) -> RunObserver | None:
        try:
            return TrackerRunObserver(handle, store=store, project=project)
        except Exception:  # an unreachable store must not stop the agent
            return None

    return factory
