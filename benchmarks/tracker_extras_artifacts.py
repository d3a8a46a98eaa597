"""Artifact logging and tunnel throughput against plain anchors measured in the same run.

1. Logging a directory as an artifact (hash every file, copy new blobs, write the manifest in
   SQLite) vs the anchor ``shutil.copytree`` of the same directory: the price of content
   addressing. A second log of unchanged content only hashes (dedup), so it should cost less
   than the copy.
2. Monitors: feeding 100,000 points through NaN + spike + divergence + plateau detectors vs the
   anchor of a bare Python loop appending the same points to a list.
3. Export of 100,000 points to Parquet vs to CSV (csv module).

Prints the ratios and exits 0.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    os.environ.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="wt-bench-home-"))
    from workbench_tracker.artifacts import ArtifactStore
    from workbench_tracker.exporting import RunRecord, export_runs
    from workbench_tracker.monitors import MetricMonitor

    tmp = Path(tempfile.mkdtemp(prefix="wt-bench-"))
    try:
        src = tmp / "data"
        rng = random.Random(0)
        for i in range(200):  # 200 files x 256 KiB = 50 MiB
            d = src / f"shard{i % 10}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i}.bin").write_bytes(rng.randbytes(256 * 1024))
        engine = create_engine(f"sqlite:///{tmp / 'bench.db'}")
        store = ArtifactStore(engine, tmp / "artifacts")
        copy_s = _timed(lambda: shutil.copytree(src, tmp / "copy"))
        first_s = _timed(lambda: store.log("bench", src, "data", "dataset", run_id="r"))
        again_s = _timed(lambda: store.log("bench", src, "data", "dataset", run_id="r"))
        assert len(store.list_versions("bench", "data")) == 1
        print(
            f"artifact log 50 MiB: {first_s:.3f}s vs copytree {copy_s:.3f}s "
            f"-> ratio {first_s / copy_s:.2f}x"
        )
        print(f"artifact re-log (dedup): {again_s:.3f}s -> ratio {again_s / copy_s:.2f}x of copy")

        n = 100_000
        series = [2.0 * math.exp(-i / 20000) + rng.gauss(0, 0.01) for i in range(n)]
        mon = MetricMonitor(
            {"loss": {"nan": True, "spike": True, "divergence": True, "plateau": True}}
        )
        sink: list[tuple[int, float]] = []

        def bare() -> None:
            for i, v in enumerate(series):
                sink.append((i, v))

        def monitored() -> None:
            for i, v in enumerate(series):
                mon.observe({"loss": v}, i)

        bare_s = _timed(bare)
        mon_s = _timed(monitored)
        print(
            f"monitors 100k points: {mon_s:.3f}s vs bare loop {bare_s:.3f}s -> "
            f"{mon_s / n * 1e6:.2f} us/point, ratio {mon_s / bare_s:.1f}x"
        )

        rec = RunRecord(
            id="r",
            project="bench",
            name="r",
            metrics=[("loss", i, v, 0.0) for i, v in enumerate(series)],
        )
        warm = RunRecord(id="w", project="bench", name="w", metrics=[("loss", 0, 1.0, 0.0)])
        for fmt in ("csv", "parquet"):  # import cost is not export cost
            export_runs([warm], fmt, tmp / f"warm.{fmt}")
        csv_s = _timed(lambda: export_runs([rec], "csv", tmp / "out.csv"))
        pq_s = _timed(lambda: export_runs([rec], "parquet", tmp / "out.parquet"))
        print(
            f"export 100k points: parquet {pq_s:.3f}s vs csv {csv_s:.3f}s -> "
            f"ratio {pq_s / csv_s:.2f}x"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
