"""What one app serves: engines, their schedulers and device workers, adapters, stores.

Kept apart from the routes so the native API, the OpenAI-compatible API and the WebSocket all
resolve a model name the same way (base model, vision model, image model or a LoRA checkpoint).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from workbench_serving.api.errors import APIError
from workbench_serving.futures import FutureStore
from workbench_serving.idempotency import IdempotencyStore
from workbench_serving.metrics import ServingMetrics
from workbench_serving.scheduler import BatchScheduler, DeviceWorker
from workbench_serving.settings import ServingSettings

log = logging.getLogger("workbench_serving")


@dataclass
class ServedModel:
    name: str
    kind: str
    engine: Any
    scheduler: BatchScheduler
    status: str = "loading"  # loading / ready / error
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Adapter:
    """A saved LoRA checkpoint served as a model (vLLM's LoRA modules)."""

    model_name: str
    base_model: str
    run_id: str
    checkpoint: str
    path: str | None = None


def parse_spec(spec: str) -> tuple[str | None, str]:
    """``kind:name`` or ``name`` -> (kind or None, name)."""
    head, sep, tail = spec.partition(":")
    if sep and head in ("text", "image", "vision") and tail:
        return head, tail
    return None, spec


def model_display_name(name: str) -> str:
    return os.path.basename(name.rstrip("/")) if os.sep in name else name


class ServingState:
    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.metrics = ServingMetrics()
        self.idempotency = IdempotencyStore(
            settings.idempotency_max_entries, settings.idempotency_ttl_s
        )
        self.futures = FutureStore(settings.futures_max_entries, settings.futures_ttl_s)
        self.workers: dict[str, DeviceWorker] = {}
        self.models: dict[str, ServedModel] = {}
        self.training: ServedModel | None = None
        self.adapters: dict[str, Adapter] = {}
        self.load_task: asyncio.Task[None] | None = None
        self.closing = False
        self.ws_connections = 0
        self.started_at = time.time()

    # ------------------------------------------------------------------ lookup

    def ready(self) -> bool:
        models = list(self.models.values()) + ([self.training] if self.training else [])
        loading = self.load_task is not None and not self.load_task.done()
        return bool(models) and not loading and all(m.status == "ready" for m in models)

    def get_model(self, name: str, *, kinds: tuple[str, ...], param: str = "model") -> ServedModel:
        served = self.models.get(name)
        if served is None or served.kind not in kinds:
            available = sorted(n for n, m in self.models.items() if m.kind in kinds)
            raise APIError(
                404,
                f"{param}: model {name!r} is not served for this endpoint; "
                f"available: {', '.join(available) or 'none'}",
                param=param,
                code="model_not_found",
            )
        return self.ensure_ready(served)

    @staticmethod
    def ensure_ready(served: ServedModel) -> ServedModel:
        if served.status == "loading":
            raise APIError(
                503, f"model {served.name!r} is still loading", headers={"Retry-After": "2"}
            )
        if served.status == "error":
            raise APIError(503, f"model {served.name!r} failed to load: {served.error}")
        return served

    def first_of_kind(self, kind: str) -> ServedModel | None:
        return next((m for m in self.models.values() if m.kind == kind), None)

    def worker_for(self, device: str) -> DeviceWorker:
        if device not in self.workers:
            self.workers[device] = DeviceWorker(device)
        return self.workers[device]

    def make_scheduler(self, engine: Any, device: str) -> BatchScheduler:
        b = self.settings.batching_for(engine.name)
        sched = BatchScheduler(
            engine,
            self.worker_for(device),
            max_batch_size=b.max_batch_size,
            max_wait_ms=b.max_wait_ms,
            max_queue_size=b.max_queue_size,
            on_batch=self.metrics.observe_batch,
        )
        return sched

    def all_schedulers(self) -> list[BatchScheduler]:
        out = [m.scheduler for m in self.models.values()]
        if self.training is not None:
            out.append(self.training.scheduler)
        return out

    def update_gauges(self) -> None:
        for sched in self.all_schedulers():
            self.metrics.queue_depth.labels(sched.name).set(sched.queue_depth)
        for m in [*self.models.values(), *([self.training] if self.training else [])]:
            self.metrics.model_ready.labels(m.name).set(1 if m.status == "ready" else 0)

    def adapter_host(self, adapter: Adapter) -> ServedModel:
        """The served text model whose engine carries ``adapter``."""
        host = self.models.get(adapter.base_model)
        if host is None or host.kind != "text":
            raise APIError(
                503, f"base model {adapter.base_model!r} of {adapter.model_name!r} is not served"
            )
        return host
