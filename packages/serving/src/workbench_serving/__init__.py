"""Workbench serving: text, image, vision and LoRA training engines behind a batching server.

``create_app(settings)`` builds the FastAPI app (native API under ``/api/v1``, OpenAI-compatible
API under ``/v1``, ``/metrics``, a WebSocket); ``workbench serve`` runs it. Importing this package
stays light: the web app and the engines are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench_serving.app import create_app
    from workbench_serving.scheduler import (
        BatchScheduler,
        DeadlineExceeded,
        DeviceWorker,
        QueueFull,
        RequestCancelled,
        SchedulerClosed,
        SchedulerError,
    )
    from workbench_serving.settings import (
        BatchingSettings,
        InsecureBindError,
        ServingSettings,
        check_bind_is_safe,
    )

_LAZY = {
    "create_app": "workbench_serving.app",
    "BatchScheduler": "workbench_serving.scheduler",
    "DeadlineExceeded": "workbench_serving.scheduler",
    "DeviceWorker": "workbench_serving.scheduler",
    "QueueFull": "workbench_serving.scheduler",
    "RequestCancelled": "workbench_serving.scheduler",
    "SchedulerClosed": "workbench_serving.scheduler",
    "SchedulerError": "workbench_serving.scheduler",
    "BatchingSettings": "workbench_serving.settings",
    "InsecureBindError": "workbench_serving.settings",
    "ServingSettings": "workbench_serving.settings",
    "check_bind_is_safe": "workbench_serving.settings",
}

__all__ = [
    "BatchScheduler",
    "BatchingSettings",
    "DeadlineExceeded",
    "DeviceWorker",
    "InsecureBindError",
    "QueueFull",
    "RequestCancelled",
    "SchedulerClosed",
    "SchedulerError",
    "ServingSettings",
    "check_bind_is_safe",
    "create_app",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench_serving' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
