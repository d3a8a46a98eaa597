"""System sampler logs system/* series in the background and stops with the run."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from _extras_fixtures import EngineStore, RunHandle

from workbench_tracker.system import SystemSampler, attach_system_metrics, read_gpu_stats


def test_sampler_logs_system_keys_until_the_run_finishes():
    run = RunHandle("r1", "p", EngineStore(engine=None))  # type: ignore[arg-type]
    sampler = attach_system_metrics(run, interval=0.05, gpu=False)
    deadline = time.monotonic() + 20
    while len(run.logged) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    run.finish()
    assert not sampler.running
    count = len(run.logged)
    assert count >= 3
    keys = set(run.logged[0][0])
    assert {"system/cpu_percent", "system/memory_percent", "system/process_rss_mb"} <= keys
    assert all(k.startswith("system/") for k in keys)
    assert run.logged[0][0]["system/process_rss_mb"] > 1
    time.sleep(0.2)
    assert len(run.logged) == count  # nothing after stop


def test_sampler_rejects_too_small_interval():
    with pytest.raises(ValueError, match="interval"):
        SystemSampler(lambda s: None, interval=0.0)


def test_gpu_stats_parse_nvidia_smi_csv(tmp_path: Path):
    # nvidia-smi is the machine's edge: this script prints its real CSV format for two GPUs.
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho '0, 87, 40000, 81559, 61, 301.5'\necho '1, [N/A], 10, 81559, 40, [N/A]'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    stats = read_gpu_stats(str(fake))
    assert stats["system/gpu0/utilization"] == 87
    assert stats["system/gpu0/memory_used_mb"] == 40000
    assert stats["system/gpu0/memory_percent"] == pytest.approx(100 * 40000 / 81559)
    assert "system/gpu1/utilization" not in stats
    assert stats["system/gpu1/temperature_c"] == 40


def test_no_gpu_stats_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert read_gpu_stats() == {}


def test_system_module_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, workbench_tracker.system as s; s.sample_system(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True
    )
    assert out.stdout.strip() == "False"


def test_system_metrics_on_a_real_run_land_in_the_store_and_stop_at_finish(tmp_path):
    import workbench_tracker as wt
    from workbench_tracker.store.sql import SQLStore

    store = SQLStore(f"sqlite:///{tmp_path / 'tracker.db'}")
    run = wt.init(project="p", store=store, capture_env=False, flush_interval=0.05)
    sampler = attach_system_metrics(run, interval=0.05, gpu=False)
    deadline = time.monotonic() + 20
    while sampler.samples < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    run.log({"loss": 1.0})
    run.finish()
    assert not sampler.running
    keys = store.metric_keys(run.id)
    assert "system/cpu_percent" in keys and "system/memory_percent" in keys
    assert keys["system/cpu_percent"]["count"] >= 3
    assert "loss" in keys
    store.close()
