"""``wt.init(monitors=..., system_metrics=...)`` wires the extras into a real run."""

from __future__ import annotations

import math
import time

import workbench_tracker as wt


def test_init_with_monitors_stores_an_alert_for_a_nan_loss(tmp_path):
    store = f"sqlite:///{tmp_path / 'tracker.db'}"
    run = wt.init(project="p", config={}, store=store, monitors=True, capture_env=False)
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1)}, step=i)
    run.log({"loss": math.nan}, step=5)
    run_id = run.id
    wt.finish()
    alerts = wt.get_store(store).list_alerts(run_id)
    assert [(a.key, a.kind) for a in alerts] == [("loss", "nan")]


def test_init_with_system_metrics_logs_system_series(tmp_path):
    store = f"sqlite:///{tmp_path / 'tracker.db'}"
    run = wt.init(project="p", store=store, system_metrics=0.05, capture_env=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run.flush()
        if any(k.startswith("system/") for k in wt.get_store(store).metric_keys(run.id)):
            break
        time.sleep(0.1)
    keys = set(wt.get_store(store).metric_keys(run.id))
    wt.finish()
    assert "system/cpu_percent" in keys
