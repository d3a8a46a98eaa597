"""System metrics: a background sampler logging CPU, RAM and GPU as ``system/*`` series.

GPU figures come from ``nvidia-smi`` (when it is on PATH), never from torch: importing torch
would cost seconds and hundreds of MB in every tracked process, and would initialise CUDA in the
parent of a training script that may want to choose its device itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SystemSampler", "attach_system_metrics", "read_gpu_stats", "sample_system"]

log = logging.getLogger(__name__)

_GPU_QUERY = "index,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"


def _num(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def read_gpu_stats(nvidia_smi: str | None = None, timeout: float = 5.0) -> dict[str, float]:
    """Query nvidia-smi; return ``system/gpu<i>/...`` figures, or {} when there is no GPU."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={_GPU_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("nvidia-smi failed: %s", exc)
        return {}
    if proc.returncode != 0:
        return {}
    out: dict[str, float] = {}
    names = ["utilization", "memory_used_mb", "memory_total_mb", "temperature_c", "power_w"]
    for line in proc.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        idx = parts[0]
        for name, raw in zip(names, parts[1:], strict=False):
            value = _num(raw)
            if value is not None:
                out[f"system/gpu{idx}/{name}"] = value
        used = _num(parts[2])
        total = _num(parts[3]) if len(parts) > 3 else None
        if used is not None and total:
            out[f"system/gpu{idx}/memory_percent"] = 100.0 * used / total
    return out


def sample_system(process: Any | None = None, gpu: bool = True) -> dict[str, float]:
    """One sample of CPU/RAM (machine and this process) plus GPU when available."""
    import psutil

    vm = psutil.virtual_memory()
    out: dict[str, float] = {
        "system/cpu_percent": float(psutil.cpu_percent(interval=None)),
        "system/memory_percent": float(vm.percent),
        "system/memory_used_gb": vm.used / 1e9,
    }
    if process is not None:
        with process.oneshot():
            out["system/process_rss_mb"] = process.memory_info().rss / 1e6
            out["system/process_cpu_percent"] = float(process.cpu_percent(interval=None))
            out["system/process_threads"] = float(process.num_threads())
    if gpu:
        out.update(read_gpu_stats())
    return out


class SystemSampler:
    """Background thread calling ``log_fn(sample)`` every ``interval`` seconds until stopped.

    Args:
        log_fn: receives a dict of ``system/*`` floats (e.g. a Run's system-metrics logger).
        interval: seconds between samples (>= 0.05).
        gpu: query nvidia-smi too.
    """

    def __init__(
        self, log_fn: Callable[[dict[str, float]], Any], interval: float = 10.0, gpu: bool = True
    ) -> None:
        if interval < 0.05:
            raise ValueError("interval: must be at least 0.05 seconds")
        self.log_fn, self.interval, self.gpu = log_fn, interval, gpu
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0

    def start(self) -> SystemSampler:
        """Start sampling (idempotent)."""
        if self._thread is None:
            import psutil

            self._process = psutil.Process(os.getpid())
            psutil.cpu_percent(interval=None)  # prime: the first call always returns 0.0
            self._process.cpu_percent(interval=None)
            self._thread = threading.Thread(target=self._loop, name="wt-system", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.log_fn(sample_system(self._process, self.gpu))
                self.samples += 1
            except Exception:  # sampling must never take the training process down
                log.exception("system metrics sample failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()


def attach_system_metrics(run: Any, interval: float = 10.0, gpu: bool = True) -> SystemSampler:
    """Sample system metrics into ``run`` until it finishes.

    Uses ``run.log_system(dict)`` when the Run offers one (so system series do not advance the
    training step), else ``run.log(dict, step=None)``; registers ``stop`` in ``run.finish_hooks``.
    """
    log_system = getattr(run, "log_system", None)
    if callable(log_system):
        fn: Callable[[dict[str, float]], Any] = log_system
    else:

        def fn(sample: dict[str, float]) -> Any:
            return run.log(sample, commit=False) if _accepts_commit(run.log) else run.log(sample)

    def guarded(sample: dict[str, float]) -> Any:
        if getattr(run, "finished", False):
            sampler._stop.set()  # the run ended without telling us: stop quietly
            return None
        return fn(sample)

    sampler = SystemSampler(guarded, interval, gpu).start()
    from workbench_tracker.monitors import _on_finish

    _on_finish(run, sampler.stop)
    return sampler


def _accepts_commit(fn: Callable[..., Any]) -> bool:
    import inspect

    try:
        return "commit" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
