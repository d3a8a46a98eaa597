"""Prometheus metrics on a per-app registry.

A registry per app (not the process-global default) lets several apps live in one process (tests,
the dev server) without duplicate-metric errors and keeps each app's numbers its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServingMetrics:
    """Every metric the server exports, bound to one registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queue_depth = Gauge(
            "workbench_queue_depth", "Requests waiting per model", ["model"], registry=r
        )
        self.batch_size = Histogram(
            "workbench_batch_size",
            "Items per engine batch",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "workbench_batch_seconds",
            "Time an engine batch ran on its device",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_latency = Histogram(
            "workbench_request_latency_seconds",
            "End-to-end latency of HTTP requests",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "workbench_tokens",
            "Tokens processed (prompt) and generated (completion)",
            ["model", "kind"],
            registry=r,
        )
        self.errors = Counter(
            "workbench_errors", "Error responses by type", ["type", "status"], registry=r
        )
        self.batches = Counter("workbench_batches", "Engine batches run", ["model"], registry=r)
        self.model_ready = Gauge(
            "workbench_model_ready", "1 once a model is loaded", ["model"], registry=r
        )

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.batch_seconds.labels(model).observe(seconds)
        self.batches.labels(model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
