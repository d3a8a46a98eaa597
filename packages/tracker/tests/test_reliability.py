"""Crash safety and concurrency on real SQLite files, with real processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import workbench_tracker as wt


@pytest.mark.slow
def test_sigkill_while_logging_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    url = f"sqlite:///{db}"
    marker = tmp_path / "progress"
    script = textwrap.dedent(
        f"""
        import time, workbench_tracker as wt
        run = wt.init(project="p", id="victim", store={url!r}, flush_interval=0.2)
        step = 0
        while True:
            run.log({{"x": float(step)}}, step=step)
            step += 1
            if step % 200 == 0:
                open({str(marker)!r}, "w").write(f"{{step}} {{time.time()}}")
                time.sleep(0.01)
        """
    )
    # A short staleness window (writer and reader agree on it) so the crash shows quickly.
    stale_env = {"WORKBENCH_TRACKER_STALE_S": "2"}
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **stale_env})
    try:

        def progress() -> int:
            # The child rewrites the marker in place: a read may see it empty or half-written.
            try:
                return int(marker.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return -1

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if progress() >= 4000:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the logging process made no progress")
        logged_before = -1
        while logged_before < 0:
            logged_before = progress()
        time.sleep(0.6)  # > 2 flush intervals: everything logged up to now must be durable
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    # The database opens (WAL recovery) and holds every point logged > 1 interval before the kill.
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    run = wt.Api(url).run("victim")
    steps, values = run.metric("x")
    assert steps == list(range(len(steps))) and values[:3] == [0.0, 1.0, 2.0]
    assert len(steps) >= logged_before - 200
    # Nobody finished it: once its heartbeat is older than the staleness window it reads as
    # crashed (the process is gone), and the status filter finds it.
    os.environ.update(stale_env)
    try:
        deadline = time.monotonic() + 30
        while run.refresh().status != "crashed":
            assert run.status == "running", run.status
            if time.monotonic() > deadline:
                pytest.fail("the killed run never read as crashed")
            time.sleep(0.1)
        assert [r.id for r in wt.Api(url).runs(status="crashed")] == ["victim"]
        # Resuming it by id continues its steps and makes it live again.
        with wt.init(id="victim", resume="must", store=url, capture_env=False) as again:
            assert again.step == len(steps)
            again.log({"x": -1.0})
        resumed = wt.Api(url).run("victim")
        assert resumed.status == "finished"
        assert resumed.metric("x")[0][-1] == len(steps)
    finally:
        os.environ.pop("WORKBENCH_TRACKER_STALE_S", None)


@pytest.mark.slow
def test_four_processes_logging_to_one_sqlite_file_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    script = textwrap.dedent(
        """
        import sys, workbench_tracker as wt
        url, name = sys.argv[1], sys.argv[2]
        run = wt.init(project="shared", id=name, store=url, flush_interval=0.01)
        for step in range(3000):
            run.log({"a": float(step), "b": step * 0.5}, step=step)
            if step % 100 == 0:
                run.flush()
        run.summary["done"] = True
        wt.finish()
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, url, f"proc{i}"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()
    api = wt.Api(url)
    runs = api.runs(project="shared")
    assert sorted(r.id for r in runs) == [f"proc{i}" for i in range(4)]
    for r in runs:
        assert r.status == "finished" and r.summary["done"] is True
        for key in ("a", "b"):
            steps, _ = r.metric(key)
            assert steps == list(range(3000)), (r.id, key, len(steps))
    os.environ.pop("WORKBENCH_TRACKER_URL", None)
