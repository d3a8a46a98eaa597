"""Metric monitors: NaN/Inf, spikes, divergence and plateaus, raising alerts.

Each detector sees one metric's series one point at a time (``update(step, value)``) and keeps
only a bounded window, so monitoring a million-step run costs constant memory. A detector fires
once per *episode*: after it alerts it stays quiet until the condition clears, so a diverged loss
produces one alert, not one per step.

Configuration (``wt.init(..., monitors={...})`` passes it to :func:`attach_monitors`)::

    {
        "loss": {"nan": True, "spike": {"window": 50, "threshold": 6},
                 "divergence": {"patience": 20, "tolerance": 0.5, "mode": "min"},
                 "plateau": {"window": 200, "min_delta": 1e-3, "mode": "min"}},
        "*": {"nan": True},                  # fnmatch patterns; the first match wins
        "webhook": "https://hooks.example/alerts",   # optional, POSTed as JSON
    }

``True`` for a detector means its defaults; ``False``/absent means off. With ``monitors=True``
every metric gets the NaN/Inf detector.
"""

from __future__ import annotations

import bisect
import fnmatch
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Alert",
    "Detector",
    "DivergenceDetector",
    "MetricMonitor",
    "MonitorConfigError",
    "NanInfDetector",
    "PlateauDetector",
    "SpikeDetector",
    "WebhookNotifier",
    "attach_monitors",
    "build_detectors",
]

log = logging.getLogger(__name__)


class MonitorConfigError(ValueError):
    """The monitors configuration is malformed; the message names the key at fault."""


@dataclass
class Alert:
    """One alert raised by a detector."""

    kind: str  # "nan", "spike", "divergence", "plateau"
    key: str
    step: int | None
    value: float
    message: str
    level: str = "warning"
    run_id: str | None = None
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the webhook body and the live event payload)."""
        data = asdict(self)
        if not math.isfinite(self.value):
            data["value"] = str(self.value)
        return data


class Detector:
    """Base class: subclasses implement ``check`` and get episode handling for free."""

    kind = "detector"

    def __init__(self) -> None:
        self._firing = False

    def check(self, step: int | None, value: float) -> tuple[str, dict[str, Any]] | None:
        """Return (message, details) while the condition holds, else None."""
        raise NotImplementedError

    def update(self, key: str, step: int | None, value: float) -> Alert | None:
        """Feed one point; return an Alert when a new episode starts."""
        hit = self.check(step, value)
        if hit is None:
            self._firing = False
            return None
        if self._firing:
            return None
        self._firing = True
        message, details = hit
        level = "error" if self.kind in ("nan", "divergence") else "warning"
        return Alert(self.kind, key, step, value, f"{key}: {message}", level, details=details)


class NanInfDetector(Detector):
    """Fires when a value is NaN or +-Inf (the training has blown up)."""

    kind = "nan"

    def check(self, step: int | None, value: float) -> tuple[str, dict[str, Any]] | None:
        if math.isnan(value):
            return f"value is NaN at step {step}", {}
        if math.isinf(value):
            return f"value is {'+' if value > 0 else '-'}Inf at step {step}", {}
        return None


class SpikeDetector(Detector):
    """Robust z-score over a sliding window: |x - median| / (1.4826 * MAD) > threshold.

    Median/MAD instead of mean/std so one earlier spike in the window does not mask the next, and
    a noisy but stable series does not trip it. Spikes are not added to the window.

    The window is kept sorted (bisect), so the median is O(1); the MAD (an O(window) selection)
    is refreshed every few points and always recomputed exactly before a spike is declared, so
    the cached value only decides which points deserve an exact check.
    """

    kind = "spike"

    def __init__(self, window: int = 50, threshold: float = 6.0, min_points: int = 10) -> None:
        super().__init__()
        if window < 3 or min_points < 3 or threshold <= 0:
            raise MonitorConfigError("spike: window and min_points >= 3, threshold > 0")
        self.window: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        self.threshold = threshold
        self.min_points = min_points
        self._scale: float | None = None
        self._since_refresh = 0
        self._refresh_every = max(1, window // 5)

    @staticmethod
    def _mad(s: list[float], med: float) -> float:
        """Median absolute deviation of sorted ``s``: merge the two sides outward from med."""
        n = len(s)
        j = bisect.bisect_left(s, med)
        i = j - 1
        need = n // 2 + 1
        prev = cur = 0.0
        for _ in range(need):
            prev = cur
            if i >= 0 and (j >= n or med - s[i] <= s[j] - med):
                cur = med - s[i]
                i -= 1
            else:
                cur = s[j] - med
                j += 1
        return cur if n % 2 else (prev + cur) / 2

    def _median(self) -> float:
        s, n = self._sorted, len(self._sorted)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2

    def _exact_scale(self, med: float) -> tuple[float, float]:
        mad = self._mad(self._sorted, med)
        scale = 1.4826 * mad
        if scale == 0:
            # A perfectly flat window: any sizeable departure is a spike.
            scale = max(abs(med) * 1e-3, 1e-12)
        self._scale, self._since_refresh = scale, 0
        return scale, mad

    def check(self, step: int | None, value: float) -> tuple[str, dict[str, Any]] | None:
        if not math.isfinite(value):
            return None
        if len(self._sorted) >= self.min_points:
            med = self._median()
            if self._scale is None or self._since_refresh >= self._refresh_every:
                self._exact_scale(med)
            assert self._scale is not None
            self._since_refresh += 1
            if abs(value - med) / self._scale > self.threshold * 0.5:
                scale, mad = self._exact_scale(med)
                z = (value - med) / scale
                if abs(z) > self.threshold:
                    return (
                        f"spike at step {step}: {value:.6g} vs median {med:.6g} (robust z={z:.1f})",
                        {"median": med, "mad": mad, "z": z},
                    )
        if len(self.window) == self.window.maxlen:
            old = self.window[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self.window.append(value)
        bisect.insort(self._sorted, value)
        return None


class DivergenceDetector(Detector):
    """Sustained move away from the best value seen (up for ``mode='min'``).

    Fires when ``patience`` consecutive points are worse than ``best`` by more than
    ``tolerance * max(|best|, eps)``; one noisy point never counts.
    """

    kind = "divergence"

    def __init__(
        self, patience: int = 20, tolerance: float = 0.5, mode: str = "min", warmup: int = 5
    ) -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise MonitorConfigError("divergence.mode: must be 'min' or 'max'")
        if patience < 1 or tolerance < 0:
            raise MonitorConfigError("divergence: patience >= 1 and tolerance >= 0")
        self.patience, self.tolerance, self.mode, self.warmup = patience, tolerance, mode, warmup
        self.best: float | None = None
        self.seen = 0
        self.bad = 0

    def check(self, step: int | None, value: float) -> tuple[str, dict[str, Any]] | None:
        if not math.isfinite(value):
            return None
        self.seen += 1
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * value < sign * self.best:
            self.best = value
            self.bad = 0
            return None
        margin = self.tolerance * max(abs(self.best), 1e-8)
        if sign * (value - self.best) > margin and self.seen > self.warmup:
            self.bad += 1
        else:
            self.bad = 0
        if self.bad >= self.patience:
            return (
                f"diverging: {self.bad} consecutive points worse than best {self.best:.6g} "
                f"by more than {self.tolerance:.0%} (now {value:.6g})",
                {"best": self.best, "consecutive": self.bad},
            )
        return None


class PlateauDetector(Detector):
    """No improvement of the best value by ``min_delta`` within the last ``window`` points."""

    kind = "plateau"

    def __init__(self, window: int = 200, min_delta: float = 1e-4, mode: str = "min") -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise MonitorConfigError("plateau.mode: must be 'min' or 'max'")
        if window < 2:
            raise MonitorConfigError("plateau.window: must be >= 2")
        self.window, self.min_delta, self.mode = window, min_delta, mode
        self.best: float | None = None
        self.since_improvement = 0

    def check(self, step: int | None, value: float) -> tuple[str, dict[str, Any]] | None:
        if not math.isfinite(value):
            return None
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best = value
            self.since_improvement = 0
            return None
        self.since_improvement += 1
        if self.since_improvement >= self.window:
            return (
                f"plateau: no improvement over {self.best:.6g} by {self.min_delta:g} "
                f"in {self.since_improvement} points",
                {"best": self.best, "points": self.since_improvement},
            )
        return None


_DETECTORS: dict[str, type[Detector]] = {
    "nan": NanInfDetector,
    "spike": SpikeDetector,
    "divergence": DivergenceDetector,
    "plateau": PlateauDetector,
}


def build_detectors(spec: Any, where: str = "monitors") -> list[Detector]:
    """Turn one metric's spec (``True`` or ``{"nan": True, "spike": {...}}``) into detectors.

    Raises:
        MonitorConfigError: naming the key at fault.
    """
    if spec is True:
        return [NanInfDetector()]
    if spec is False or spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise MonitorConfigError(f"{where}: expected true/false or a mapping of detectors")
    out: list[Detector] = []
    for name, opts in spec.items():
        cls = _DETECTORS.get(name)
        if cls is None:
            raise MonitorConfigError(
                f"{where}.{name}: unknown detector (choose from {', '.join(_DETECTORS)})"
            )
        if opts is False or opts is None:
            continue
        if opts is True:
            out.append(cls())
        elif isinstance(opts, Mapping):
            try:
                out.append(cls(**dict(opts)))
            except TypeError as exc:
                raise MonitorConfigError(f"{where}.{name}: {exc}") from exc
        else:
            raise MonitorConfigError(f"{where}.{name}: expected true/false or a mapping")
    return out


class WebhookNotifier:
    """POST each alert as JSON to a URL from a background thread (never blocks training).

    Delivery is retried a few times with backoff; the queue is bounded so an unreachable
    endpoint cannot grow memory without limit (overflowing alerts are dropped and logged).
    """

    def __init__(self, url: str, timeout: float = 5.0, attempts: int = 3, maxsize: int = 256):
        if not url.startswith(("http://", "https://")):
            raise MonitorConfigError("webhook: must be an http(s) URL")
        self.url, self.timeout, self.attempts = url, timeout, attempts
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._worker, name="wt-webhook", daemon=True)
        self._thread.start()
        self.delivered = 0

    def __call__(self, alert: Alert) -> None:
        try:
            self._q.put_nowait(alert.to_dict())
        except queue.Full:
            log.warning("webhook queue full; dropping alert %s", alert.message)

    def _worker(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while True:
                item = self._q.get()
                if item is None:
                    return
                for attempt in range(self.attempts):
                    try:
                        resp = client.post(self.url, json={"type": "alert", "alert": item})
                        if resp.status_code < 500:
                            self.delivered += 1
                            break
                    except httpx.HTTPError as exc:
                        log.debug("webhook attempt %d failed: %s", attempt + 1, exc)
                    time.sleep(0.2 * 2**attempt)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (bounded by ``timeout``) and stop the thread."""
        self._q.put(None)
        self._thread.join(timeout)


AlertSink = Callable[[Alert], None]


class MetricMonitor:
    """Routes logged metrics to per-key detectors and alerts to sinks.

    Args:
        config: the monitors mapping (see module docstring), or True for NaN/Inf everywhere.
        sinks: callables receiving each Alert (store writer, event bus, webhook).
        run_id: stamped on every alert.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | bool,
        sinks: list[AlertSink] | None = None,
        run_id: str | None = None,
    ) -> None:
        if config is True:
            config = {"*": {"nan": True}}
        elif config is False:
            config = {}
        if not isinstance(config, Mapping):
            raise MonitorConfigError("monitors: expected a mapping or true/false")
        self.patterns: list[tuple[str, Any]] = []
        self.webhook: WebhookNotifier | None = None
        for key, spec in config.items():
            if key == "webhook":
                if spec:
                    self.webhook = WebhookNotifier(str(spec))
                continue
            build_detectors(spec, f"monitors.{key}")  # validate eagerly, fail at init time
            self.patterns.append((str(key), spec))
        self.sinks: list[AlertSink] = list(sinks or [])
        if self.webhook is not None:
            self.sinks.append(self.webhook)
        self.run_id = run_id
        self._detectors: dict[str, list[Detector]] = {}
        self._lock = threading.Lock()
        self.alerts: list[Alert] = []

    def _for_key(self, key: str) -> list[Detector]:
        dets = self._detectors.get(key)
        if dets is None:
            dets = []
            for pattern, spec in self.patterns:
                if fnmatch.fnmatchcase(key, pattern):
                    dets = build_detectors(spec, f"monitors.{pattern}")
                    break
            self._detectors[key] = dets
        return dets

    def observe(self, metrics: Mapping[str, Any], step: int | None = None) -> list[Alert]:
        """Feed one logged dict; non-numeric values are ignored. Returns new alerts."""
        new: list[Alert] = []
        with self._lock:
            for key, raw in metrics.items():
                if isinstance(raw, bool) or not isinstance(raw, int | float):
                    try:
                        raw = float(raw)  # numpy scalars, 0-d arrays
                    except (TypeError, ValueError):
                        continue
                value = float(raw)
                for det in self._for_key(str(key)):
                    alert = det.update(str(key), step, value)
                    if alert is not None:
                        alert.run_id = self.run_id
                        new.append(alert)
            self.alerts.extend(new)
        for alert in new:
            for sink in self.sinks:
                try:
                    sink(alert)
                except Exception:  # a broken sink must never break training
                    log.exception("alert sink %r failed", sink)
        return new

    def close(self) -> None:
        """Flush the webhook, if any."""
        if self.webhook is not None:
            self.webhook.close()


def _store_sink(run: Any) -> AlertSink | None:
    store = getattr(run, "store", None)
    add = getattr(store, "add_alert", None)
    if add is None:
        return None

    def sink(alert: Alert) -> None:
        add(
            run.id,
            alert.kind,
            alert.message,
            key=alert.key,
            step=alert.step,
            value=alert.value,  # the store encodes NaN/Inf faithfully
        )

    return sink


def _bus_sink(run: Any) -> AlertSink | None:
    bus = getattr(run, "event_bus", None) or getattr(getattr(run, "store", None), "bus", None)
    publish = getattr(bus, "publish", None)
    if publish is None:
        return None

    def sink(alert: Alert) -> None:
        publish(f"run:{run.id}", "alert", alert.to_dict())

    return sink


def attach_monitors(
    run: Any, config: Mapping[str, Any] | bool, extra_sinks: list[AlertSink] | None = None
) -> MetricMonitor:
    """Attach monitors to a Run so every ``run.log`` is checked.

    Alerts go to ``run.store.add_alert`` (stored, shown in the UI), to an EventBus when the run
    or store has one (pushed live), and to the configured webhook. The run calls
    ``monitor.observe(metrics, step)`` from its log hook list (``run.log_hooks``); when a run has
    no such list, ``run.log`` is wrapped instead.
    """
    sinks = [s for s in (_store_sink(run), _bus_sink(run)) if s is not None]
    monitor = MetricMonitor(config, [*sinks, *(extra_sinks or [])], run_id=str(run.id))
    hooks = getattr(run, "log_hooks", None)
    if isinstance(hooks, list):
        hooks.append(monitor.observe)
    else:
        original = run.log

        def log_and_monitor(data: Mapping[str, Any], step: int | None = None, **kw: Any) -> Any:
            # The step this call logs at is the run's current one (log() advances it).
            at = step if step is not None else getattr(run, "step", None)
            result = original(data, step=step, **kw)
            monitor.observe(data, at)
            return result

        run.log = log_and_monitor
    _on_finish(run, monitor.close)
    return monitor


def _on_finish(run: Any, callback: Callable[[], None]) -> None:
    """Run ``callback`` when the run finishes: via ``run.finish_hooks`` or by wrapping finish."""
    hooks = getattr(run, "finish_hooks", None)
    if isinstance(hooks, list):
        hooks.append(callback)
        return
    original = run.finish

    def finish(*args: Any, **kwargs: Any) -> Any:
        try:
            callback()
        except Exception:  # finishing the run must never be skipped
            log.exception("finish hook %r failed", callback)
        return original(*args, **kwargs)

    run.finish = finish
