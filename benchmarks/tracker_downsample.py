"""A 1,000,000-point series: downsampled read (1,000 points) against reading every point.

Both reads go through the same paths a chart uses:

- the store (``SQLStore.metric_series`` vs ``metric_series_downsampled``), SQLite file;
- HTTP: a real viewer under uvicorn on 127.0.0.1 and ``HTTPStore`` (``/api/runs/{id}/series``
  with ``method=none`` vs ``points=1000``).

plus, on the store, the min/max envelope (``metric_envelope``, 500 buckets, from the per-block
summaries) against the same anchor.

Anchor: reading every point, measured in the same run. Goal: the downsampled read (and the
envelope) takes at most 0.1x the anchor's time. Prints medians of 3 and the ratios; always exits 0.

Run: ``python benchmarks/tracker_downsample.py``.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

POINTS = 1_000_000
TARGET = 1_000
GOAL = 0.1


def _median(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    import uvicorn

    from workbench_tracker.store import RunInfo, get_store
    from workbench_tracker.viewer import create_app

    tmp = tempfile.mkdtemp()
    os.environ["WORKBENCH_HOME"] = tmp
    store = get_store(f"sqlite:///{tmp}/bench.db")
    store.create_run(RunInfo(id="long", project="bench", name="long"))
    t0 = time.perf_counter()
    chunk = 100_000
    for start in range(0, POINTS, chunk):
        store.log_metrics(
            "long",
            [
                ("loss", s, math.exp(-s / 300_000) + 0.05 * math.sin(s / 37.0), 1e9 + s * 0.01)
                for s in range(start, start + chunk)
            ],
        )
    print(f"Series of {POINTS:,} points written in {time.perf_counter() - t0:.1f} s")

    full_t, full = _median(lambda: store.metric_series("long", "loss"))
    ds_t, ds = _median(lambda: store.metric_series_downsampled("long", "loss", points=TARGET))
    assert len(full) == POINTS and len(ds) <= TARGET
    ratio = ds_t / full_t
    print(
        f"  store: every point {full_t:.3f} s, downsampled to {len(ds)} {ds_t:.4f} s,"
        f" ratio {ratio:.3f}x (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})"
    )
    env_t, env = _median(lambda: store.metric_envelope("long", "loss", buckets=TARGET // 2))
    assert 0 < len(env) <= TARGET // 2
    ratio = env_t / full_t
    print(
        f"  store: every point {full_t:.3f} s, envelope of {len(env)} buckets {env_t:.4f} s,"
        f" ratio {ratio:.3f}x (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})"
    )

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    remote = get_store(f"http://127.0.0.1:{port}", cached=False)
    try:
        full_t, full = _median(lambda: remote.metric_series("long", "loss"), repeat=2)
        ds_t, ds = _median(lambda: remote.metric_series_downsampled("long", "loss", points=TARGET))
        assert len(full) == POINTS and len(ds) <= TARGET
        ratio = ds_t / full_t
        print(
            f"  HTTP:  every point {full_t:.3f} s, downsampled to {len(ds)} {ds_t:.4f} s,"
            f" ratio {ratio:.3f}x (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})"
        )
    finally:
        remote.close()
        server.should_exit = True
        thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
