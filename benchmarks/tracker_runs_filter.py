"""Filtering a project's runs by a config value: 5,000 runs, each with a real captured environment.

The runs table filters and sorts on config and summary values (``?config=lr=0.1``,
``sort=-summary.loss``). Their loose equality ("0.1" matches 0.1) runs in Python, so
``SQLStore.list_runs`` reads only the id/config/summary columns of every run and loads whole
rows (the environment, with its package list, is most of a row) for the returned page alone.

Anchor, measured in the same run: reading every run in full (``list_runs(limit=5000)``), which
is what a filter that loads whole rows costs at least. Also printed: an indexed page with no
filter (``list_runs(limit=100)``) as the floor. Goal: the filtered page takes at most 0.25x the
anchor's time. Prints medians of 3 and the ratios; always exits 0.

Run: ``python benchmarks/tracker_runs_filter.py``.
"""

from __future__ import annotations

import statistics
import tempfile
import timeit
from collections.abc import Callable
from typing import Any

RUNS = 5_000
PAGE = 100
GOAL = 0.25


def _median(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Median seconds of 3 calls, and what the last call returned."""
    out: list[Any] = []
    seconds = timeit.repeat(lambda: out.append(fn()), number=1, repeat=3)
    return statistics.median(seconds), out[-1]


def main() -> None:
    from workbench_tracker._env import capture_environment
    from workbench_tracker.store import SQLStore
    from workbench_tracker.store.base import RunInfo

    env = capture_environment()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLStore(f"sqlite:///{tmp}/runs.db")
        for i in range(RUNS):
            store.create_run(
                RunInfo(
                    id=f"run{i:05d}",
                    project="bench",
                    name=f"sweep-{i}",
                    status="finished",
                    config={"lr": [0.1, 0.01, 0.001][i % 3], "opt": {"name": "adam"}, "seed": i},
                    summary={"loss": 1.0 / (i + 1)},
                    environment=env,
                )
            )
        t_all, everything = _median(lambda: store.list_runs(project="bench", limit=RUNS))
        t_page, _ = _median(lambda: store.list_runs(project="bench", limit=PAGE))
        t_filter, (page, total) = _median(
            lambda: store.list_runs(project="bench", config={"lr": "0.1"}, limit=PAGE)
        )
        t_sort, _ = _median(lambda: store.list_runs(project="bench", sort="-summary.loss"))
        assert len(everything[0]) == RUNS and total == (RUNS + 2) // 3 and len(page) == PAGE
        assert all(r.environment == env for r in page)
        store.close()

    size = len(repr(env))
    print(f"tracker runs filter: {RUNS} runs, environment ~{size / 1024:.1f} KiB each")
    print(f"  anchor: every run in full                 {t_all:.4f} s")
    print(f"  indexed page, no filter ({PAGE} runs)        {t_page:.4f} s")
    for label, t in (
        ("config filter lr=0.1, one page", t_filter),
        ("sort by summary.loss", t_sort),
    ):
        ratio = t / t_all
        verdict = "met" if ratio <= GOAL else "NOT met"
        print(f"  {label:<42} {t:.4f} s  {ratio:.3f}x anchor (goal <= {GOAL}x: {verdict})")


if __name__ == "__main__":
    main()
