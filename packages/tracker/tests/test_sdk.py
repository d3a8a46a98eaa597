"""The SDK end to end on real SQLite files: init, log, summary, images, resume, hooks."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import workbench_tracker as wt
from workbench_tracker._writer import MetricWriter, WriterError
from workbench_tracker.store import RunNotFoundError, get_store


def test_logged_points_are_readable_through_api_after_finish(sqlite_url: str) -> None:
    run = wt.init(project="p", name="first", config={"lr": 0.1}, tags=["t"], store=sqlite_url)
    assert wt.run is run and wt.get_active_run() is run
    for step in range(50):
        wt.log({"loss": 1.0 / (step + 1), "acc": step / 50}, step=step)
    run.summary["best_acc"] = 0.98
    wt.finish()
    assert wt.get_active_run() is None and run.status == "finished"
    api = wt.Api(sqlite_url)
    got = api.run(run.id)
    assert got.status == "finished" and got.name == "first" and got.config == {"lr": 0.1}
    steps, values = got.metric("loss")
    assert steps == list(range(50)) and values[3] == pytest.approx(0.25)
    assert got.summary["best_acc"] == 0.98
    assert got.summary["acc"] == pytest.approx(49 / 50)  # last value filled in automatically
    hist = got.history(["loss", "acc"])
    assert hist[0] == {"step": 0, "loss": 1.0, "acc": 0.0} and len(hist) == 50
    assert [r.id for r in api.runs(project="p", tags="t")] == [run.id]


def test_steps_auto_increment_and_commit_false_shares_a_step(sqlite_url: str) -> None:
    with wt.init(project="p", store=sqlite_url) as run:
        run.log({"a": 1.0})
        run.log({"a": 2.0}, commit=False)
        run.log({"b": 3.0})
        run.log({"a": 4.0})
    api_run = wt.Api(sqlite_url).run(run.id)
    assert api_run.metric("a")[0] == [0, 1, 2]
    assert api_run.metric("b")[0] == [1]


def test_nan_and_inf_are_stored_faithfully(sqlite_url: str) -> None:
    with wt.init(project="p", store=sqlite_url) as run:
        run.log({"x": math.nan}, step=0)
        run.log({"x": math.inf}, step=1)
        run.log({"x": -math.inf}, step=2)
    _, values = wt.Api(sqlite_url).run(run.id).metric("x")
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    summary = wt.Api(sqlite_url).run(run.id).summary
    assert summary["x"] == -math.inf


@pytest.mark.parametrize(
    ("data", "step", "exc", "fragment"),
    [
        ({"loss": "high"}, 0, TypeError, "'loss'"),
        ({"loss": None}, 0, TypeError, "'loss'"),
        ({"loss": [1.0, 2.0]}, 0, TypeError, "'loss'"),
        ({"flag": True}, 0, TypeError, "'flag'"),
        ({"k" * 300: 1.0}, 0, ValueError, "length"),
        ({"": 1.0}, 0, ValueError, "length"),
        ({3: 1.0}, 0, TypeError, "3"),
        ({"bad\nkey": 1.0}, 0, ValueError, "control"),
        ({"ok": 1.0}, -1, ValueError, "step"),
        ({"ok": 1.0}, "5", TypeError, "step"),
        ({"ok": 1.0}, 1.5, TypeError, "step"),
    ],
)
def test_bad_log_calls_are_rejected_naming_the_field(
    sqlite_url: str, data: Any, step: Any, exc: type[Exception], fragment: str
) -> None:
    with wt.init(project="p", store=sqlite_url) as run:
        with pytest.raises(exc, match=fragment):
            run.log(data, step=step)
        run.log({"ok": 2.0}, step=0)  # the run is still usable
    assert wt.Api(sqlite_url).run(run.id).metric("ok") == ([0], [2.0])


def test_steps_must_not_go_backwards(sqlite_url: str) -> None:
    with wt.init(project="p", store=sqlite_url) as run:
        run.log({"a": 1.0}, step=10)
        with pytest.raises(ValueError, match="step"):
            run.log({"a": 1.0}, step=9)


def test_numpy_scalars_are_accepted(sqlite_url: str) -> None:
    np = pytest.importorskip("numpy")
    with wt.init(project="p", store=sqlite_url) as run:
        run.log({"a": np.float32(0.5), "b": np.int64(3), "c": np.array(2.0)}, step=0)
        with pytest.raises(TypeError, match="'d'"):
            run.log({"d": np.array([1.0, 2.0])}, step=1)
    r = wt.Api(sqlite_url).run(run.id)
    assert r.metric("a")[1] == [0.5] and r.metric("b")[1] == [3.0] and r.metric("c")[1] == [2.0]


def test_log_after_finish_raises(sqlite_url: str) -> None:
    run = wt.init(project="p", store=sqlite_url)
    run.finish()
    with pytest.raises(RuntimeError, match="finished"):
        run.log({"a": 1.0})


def test_context_manager_marks_failure_with_traceback(sqlite_url: str) -> None:
    with pytest.raises(ZeroDivisionError), wt.init(project="p", store=sqlite_url) as run:
        run.log({"a": 1.0})
        _ = 1 / 0
    got = wt.Api(sqlite_url).run(run.id)
    assert got.status == "failed"
    assert got.error is not None and "ZeroDivisionError" in got.error
    assert got.traceback is not None and "1 / 0" in got.traceback
    assert got.metric("a") == ([0], [1.0])


def test_resume_continues_steps_and_keeps_config(sqlite_url: str) -> None:
    with wt.init(project="p", id="resumable", config={"lr": 0.1}, store=sqlite_url) as run:
        for s in range(5):
            run.log({"loss": float(s)})
    with pytest.raises(ValueError, match="id"):
        wt.init(project="p", id="resumable", store=sqlite_url)
    with wt.init(
        project="p", id="resumable", resume=True, config={"epochs": 3}, store=sqlite_url
    ) as r2:
        assert r2.step == 5
        r2.log({"loss": 5.0})
    got = wt.Api(sqlite_url).run("resumable")
    assert got.metric("loss")[0] == [0, 1, 2, 3, 4, 5]
    assert got.config == {"lr": 0.1, "epochs": 3} and got.status == "finished"
    with pytest.raises(RunNotFoundError):
        wt.init(project="p", id="never-was", resume="must", store=sqlite_url)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"project": ""}, "project"),
        ({"project": "p", "tags": ["", "x"]}, "tags"),
        ({"project": "p", "id": "x" * 100}, "id"),
        ({"project": "p", "resume": "sometimes"}, "resume"),
        ({"project": "p", "config": {"f": object()}}, "config"),
    ],
)
def test_bad_init_arguments_name_the_field(
    sqlite_url: str, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=field):
        wt.init(store=sqlite_url, **kwargs)


def test_images_are_logged_from_arrays_and_bytes(sqlite_url: str) -> None:
    np = pytest.importorskip("numpy")
    img = np.zeros((4, 6, 3), dtype=np.uint8)
    img[:, :, 0] = 255
    with wt.init(project="p", store=sqlite_url) as run:
        run.log_image("samples", img, step=0, caption="red")
        run.log({"gray": wt.Image(np.linspace(0, 1, 16).reshape(4, 4))}, step=1)
    api = wt.Api(sqlite_url)
    media = api.run(run.id).media()
    assert [(m.key, m.step, m.width, m.height) for m in media] == [
        ("gray", 1, 4, 4),
        ("samples", 0, 6, 4),
    ]
    data = api.media_bytes(media[1].id)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="image"):
        wt.Image(b"not an image")


def test_environment_is_captured(sqlite_url: str) -> None:
    with wt.init(project="p", store=sqlite_url) as run:
        pass
    envinfo = wt.Api(sqlite_url).run(run.id).environment
    assert envinfo["python"]["version"].startswith(f"{sys.version_info.major}.")
    assert envinfo["hostname"] and isinstance(envinfo["command"], list)
    assert "pytest" in {k.lower() for k in envinfo["packages"]}


def test_git_state_is_captured_with_dirty_diff(tmp_path: Path) -> None:
    from workbench_tracker._env import capture_environment

    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    try:
        run("init", "-q", "-b", "main")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    run("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x")
    (repo / "f.txt").write_text("one\n")
    run("add", "f.txt")
    run("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "f")
    (repo / "f.txt").write_text("two\n")
    git = capture_environment(str(repo))["git"]
    assert git["branch"] == "main" and len(git["commit"]) == 40
    assert git["dirty"] is True and "+two" in git["diff"]


def test_config_and_summary_changes_persist_while_running(sqlite_url: str) -> None:
    run = wt.init(project="p", store=sqlite_url, flush_interval=0.05)
    run.config["batch"] = 32
    run.summary["note"] = "halfway"
    run.flush()
    got = wt.Api(sqlite_url).run(run.id)
    assert got.config["batch"] == 32 and got.summary["note"] == "halfway"
    assert got.status == "running"
    run.finish()


def test_uncaught_exception_marks_run_failed_and_exit_finishes_open_runs(
    tmp_path: Path, sqlite_url: str
) -> None:
    script = textwrap.dedent(
        f"""
        import workbench_tracker as wt
        a = wt.init(project="p", id="crashes", store={sqlite_url!r})
        a.log({{"x": 1.0}})
        raise RuntimeError("kaboom")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1 and "kaboom" in proc.stderr  # the original hook still ran
    got = wt.Api(sqlite_url).run("crashes")
    assert got.status == "failed" and "RuntimeError: kaboom" in (got.error or "")
    assert "kaboom" in (got.traceback or "") and got.metric("x") == ([0], [1.0])

    script = textwrap.dedent(
        f"""
        import workbench_tracker as wt
        run = wt.init(project="p", id="left-open", store={sqlite_url!r})
        for i in range(1000):
            run.log({{"x": float(i)}})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    got = wt.Api(sqlite_url).run("left-open")
    assert got.status == "finished" and len(got.metric("x")[0]) == 1000


class _FlakyStore:
    """A real SQLite store that fails its first N metric writes (simulating a sick disk)."""

    def __init__(self, inner: Any, failures: int, exc: Exception) -> None:
        self.inner = inner
        self.failures = failures
        self.exc = exc
        self.calls = 0

    def log_metrics(self, run_id: str, rows: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        self.inner.log_metrics(run_id, rows)


def test_writer_retries_transient_failures_without_losing_points(sqlite_url: str) -> None:
    store = get_store(sqlite_url)
    from workbench_tracker.store import RunInfo

    store.create_run(RunInfo(id="w", project="p", name="w"))
    flaky = _FlakyStore(store, 2, OSError("disk hiccup"))
    writer = MetricWriter(flaky, "w", flush_interval=0.01)  # type: ignore[arg-type]
    writer.add([("a", i, float(i), 0.0) for i in range(100)])
    writer.close()
    assert len(store.metric_series("w", "a")) == 100 and flaky.calls == 3


def test_writer_error_is_reraised_at_flush_and_points_are_kept(sqlite_url: str) -> None:
    store = get_store(sqlite_url)
    from workbench_tracker.store import RunInfo

    store.create_run(RunInfo(id="w2", project="p", name="w2"))
    flaky = _FlakyStore(store, 3, OSError("disk gone"))
    writer = MetricWriter(flaky, "w2", flush_interval=0.01, retries=1)  # type: ignore[arg-type]
    writer.add([("a", i, float(i), 0.0) for i in range(10)])
    with pytest.raises(WriterError, match="disk gone"):
        writer.flush()
    writer.flush()  # the store recovered: the kept points go out now
    writer.close()
    assert len(store.metric_series("w2", "a")) == 10


def test_a_writer_thread_that_breaks_says_so_and_never_strands_the_caller(
    sqlite_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    class Broken(BaseException):
        """Not an Exception: escapes the per-batch retry, as a bug in the loop would."""

    class BreakingStore:
        def log_metrics(self, run_id: str, rows: Any) -> None:
            raise Broken("writer bug")

    writer = MetricWriter(BreakingStore(), "wb", flush_interval=0.01, max_pending=10)  # type: ignore[arg-type]
    writer.add([("a", i, 0.0, 0.0) for i in range(10)])
    with pytest.raises(WriterError, match="writer bug"):
        writer.flush(timeout=10)
    writer._thread.join(10)
    assert not writer._thread.is_alive()
    # The buffer is full and nobody drains it: add() raises instead of blocking forever.
    with pytest.raises(WriterError, match="not running"):
        writer.add([("a", 10, 0.0, 0.0)])
    assert "writer for run wb stopped" in capfd.readouterr().err


def test_log_blocks_when_the_store_falls_behind(sqlite_url: str) -> None:
    store = get_store(sqlite_url)
    from workbench_tracker.store import RunInfo

    store.create_run(RunInfo(id="bp", project="p", name="bp"))
    gate = threading.Event()

    class SlowStore:
        def log_metrics(self, run_id: str, rows: Any) -> None:
            gate.wait()
            store.log_metrics(run_id, rows)

    writer = MetricWriter(SlowStore(), "bp", flush_interval=0.01, max_pending=100)  # type: ignore[arg-type]
    writer.add([("a", i, 0.0, 0.0) for i in range(100)])
    done = threading.Event()

    def producer() -> None:
        writer.add([("a", 100, 0.0, 0.0)])
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.3), "add() returned although the buffer was full"
    assert writer.pending <= 101
    gate.set()
    assert done.wait(10)
    t.join()
    writer.close()
    assert len(store.metric_series("bp", "a")) == 101


def test_log_to_a_remote_tracker_over_http(viewer: Any) -> None:
    server, backend = viewer
    with wt.init(project="remote", config={"lr": 1}, store=server.url) as run:
        for s in range(20):
            run.log({"loss": 1.0 / (s + 1)})
        run.log({"nan": math.nan})
    got = backend.get_run(run.id)
    assert got.status == "finished"
    assert len(backend.metric_series(run.id, "loss")) == 20
    assert math.isnan(backend.metric_series(run.id, "nan").values[0])


@pytest.mark.postgres
def test_sdk_logs_to_postgresql_end_to_end(postgres_url: str) -> None:
    with wt.init(project="pg", config={"lr": 0.2}, store=postgres_url) as run:
        for s in range(100):
            run.log({"loss": 1.0 / (s + 1), "bad": math.nan if s == 50 else 0.0})
    got = wt.Api(postgres_url).run(run.id)
    assert got.status == "finished" and got.config == {"lr": 0.2}
    assert len(got.metric("loss")[0]) == 100
    assert math.isnan(got.metric("bad")[1][50])


def test_an_idle_run_keeps_its_heartbeat_even_with_a_long_flush_interval(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_TRACKER_STALE_S", "1.6")  # heartbeat every 0.4 s
    api = wt.Api(sqlite_url)
    with wt.init(project="p", store=sqlite_url, flush_interval=3600, capture_env=False) as run:
        run.log({"x": 1.0})
        deadline = time.monotonic() + 4.0  # more than two staleness windows, no flush
        while time.monotonic() < deadline:
            assert api.run(run.id).status == "running"
            time.sleep(0.1)
        # The heartbeat did not flush the point early: it waits for its flush.
        assert api.run(run.id).metric("x") == ([], [])
        run.flush()
        assert api.run(run.id).metric("x") == ([0], [1.0])
    assert api.run(run.id).status == "finished"
