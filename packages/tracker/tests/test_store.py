"""One store test suite, run against SQLite, PostgreSQL and HTTP (a real viewer under uvicorn)."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from workbench_tracker.store import RunInfo, RunNotFoundError, Store


def _run(store: Store, run_id: str, **kw: Any) -> RunInfo:
    return store.create_run(
        RunInfo(id=run_id, project=kw.pop("project", "proj"), name=kw.pop("name", run_id), **kw)
    )


def test_created_run_reads_back_with_every_field(store: Store) -> None:
    _run(
        store,
        "r1",
        config={"lr": 0.1, "model": {"depth": 4}},
        tags=["a", "b"],
        notes="hello",
        environment={"python": {"version": "3.11"}},
    )
    got = store.get_run("r1")
    assert got.project == "proj"
    assert got.config == {"lr": 0.1, "model": {"depth": 4}}
    assert got.tags == ["a", "b"]
    assert got.notes == "hello"
    assert got.status == "running"
    assert got.environment["python"]["version"] == "3.11"
    assert got.created_at is not None and got.created_at.tzinfo is not None


def test_duplicate_run_id_is_rejected(store: Store) -> None:
    _run(store, "dup")
    with pytest.raises(ValueError, match="id"):
        _run(store, "dup")


def test_missing_run_raises_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFoundError):
        store.get_run("nope")
    with pytest.raises(RunNotFoundError):
        store.update_run("nope", status="finished")


def test_update_run_changes_status_summary_and_tags(store: Store) -> None:
    _run(store, "u1", tags=["old"])
    store.update_run("u1", status="failed", summary={"acc": 0.9}, tags=["new"], error="boom")
    got = store.get_run("u1")
    assert (got.status, got.summary, got.tags, got.error) == (
        "failed",
        {"acc": 0.9},
        ["new"],
        "boom",
    )
    runs, total = store.list_runs(tags=["old"])
    assert total == 0 and runs == []
    assert [r.id for r in store.list_runs(tags=["new"])[0]] == ["u1"]


def _wait_status(store: Store, run_id: str, want: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while store.get_run(run_id).status != want:
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} never read as {want!r}: {store.get_run(run_id).status!r}")
        time.sleep(0.05)


def test_running_run_without_heartbeat_reads_as_crashed_until_touched(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_TRACKER_STALE_S", "0.3")
    _run(store, "hb-live")
    _run(store, "hb-done")
    store.update_run("hb-done", status="finished")
    assert store.get_run("hb-live").status == "running"
    _wait_status(store, "hb-live", "crashed")
    # Finished runs never turn into crashed ones, however old.
    assert store.get_run("hb-done").status == "finished"
    crashed, total = store.list_runs(status="crashed")
    assert [r.id for r in crashed] == ["hb-live"] and total == 1
    assert crashed[0].status == "crashed"
    assert store.list_runs(status="running") == ([], 0)
    # A heartbeat (an update with no fields) makes it live again.
    assert store.update_run("hb-live").status == "running"
    assert [r.id for r in store.list_runs(status="running")[0]] == ["hb-live"]
    assert store.list_runs(status="crashed") == ([], 0)


def test_stale_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench_tracker.store.base import heartbeat_interval_s, stale_after_s

    monkeypatch.setenv("WORKBENCH_TRACKER_STALE_S", "soon")
    with pytest.raises(ValueError, match="WORKBENCH_TRACKER_STALE_S"):
        stale_after_s()
    monkeypatch.setenv("WORKBENCH_TRACKER_STALE_S", "-1")
    with pytest.raises(ValueError, match="positive"):
        stale_after_s()
    monkeypatch.setenv("WORKBENCH_TRACKER_STALE_S", "8")
    assert (stale_after_s(), heartbeat_interval_s()) == (8.0, 2.0)
    monkeypatch.delenv("WORKBENCH_TRACKER_STALE_S")
    assert (stale_after_s(), heartbeat_interval_s()) == (90.0, 15.0)


def test_metrics_round_trip_including_nan_and_inf(store: Store) -> None:
    _run(store, "m1")
    now = time.time()
    values = [0.5, math.nan, math.inf, -math.inf, -1e300, 1e-300, 0.0]
    store.log_metrics("m1", [("loss", i, v, now + i) for i, v in enumerate(values)])
    s = store.metric_series("m1", "loss")
    assert s.steps == list(range(len(values)))
    assert s.values[0] == 0.5
    assert math.isnan(s.values[1])
    assert s.values[2] == math.inf and s.values[3] == -math.inf
    assert s.values[4:] == [-1e300, 1e-300, 0.0]
    assert s.times[0] == pytest.approx(now)


def test_metric_keys_track_count_and_last_step_across_batches(store: Store) -> None:
    _run(store, "k1")
    store.log_metrics("k1", [("a", s, float(s), 0.0) for s in range(5)])
    store.log_metrics("k1", [("a", s, float(s), 0.0) for s in range(5, 8)] + [("b", 3, 9.0, 0.0)])
    keys = store.metric_keys("k1")
    assert set(keys) == {"a", "b"}
    assert keys["a"]["count"] == 8 and keys["a"]["last_step"] == 7
    assert keys["a"]["last_value"] == 7.0
    assert keys["b"]["count"] == 1 and keys["b"]["last_step"] == 3


def test_series_step_filters_and_after_step(store: Store) -> None:
    _run(store, "f1")
    store.log_metrics("f1", [("x", s, s * 2.0, 0.0) for s in range(100)])
    assert store.metric_series("f1", "x", min_step=10, max_step=12).steps == [10, 11, 12]
    tail = store.metric_series("f1", "x", after_step=97)
    assert tail.steps == [98, 99] and tail.values == [196.0, 198.0]
    assert len(store.metric_series("f1", "x", limit=5)) == 5


def test_downsampled_series_keeps_endpoints_and_spikes(store: Store) -> None:
    _run(store, "d1")
    rows = [("y", s, math.sin(s / 100.0), 0.0) for s in range(20_000)]
    rows[12_345] = ("y", 12_345, 50.0, 0.0)
    rows[15_000] = ("y", 15_000, math.nan, 0.0)
    store.log_metrics("d1", rows)
    for method in ("lttb", "minmax"):
        s = store.metric_series_downsampled("d1", "y", points=500, method=method)
        assert 2 <= len(s) <= 600, method
        assert s.steps[0] == 0 and s.steps[-1] == 19_999
        assert 12_345 in s.steps, f"{method} lost the spike"
        assert any(math.isnan(v) for v in s.values), f"{method} lost the NaN"
        assert s.steps == sorted(s.steps)


def test_list_runs_filters_sorts_and_paginates(store: Store) -> None:
    for i in range(6):
        _run(
            store,
            f"run{i}",
            project="p1" if i < 4 else "p2",
            config={"lr": 0.1 if i % 2 else 0.01, "opt": {"name": "adam" if i < 3 else "sgd"}},
            tags=["even"] if i % 2 == 0 else ["odd"],
            status="finished" if i < 5 else "running",
        )
        time.sleep(0.002)
    runs, total = store.list_runs(project="p1")
    assert total == 4 and [r.id for r in runs] == ["run3", "run2", "run1", "run0"]
    runs, total = store.list_runs(project="p1", sort="created_at", limit=2, offset=1)
    assert total == 4 and [r.id for r in runs] == ["run1", "run2"]
    assert {r.id for r in store.list_runs(tags=["odd"])[0]} == {"run1", "run3", "run5"}
    assert {r.id for r in store.list_runs(status="running")[0]} == {"run5"}
    runs, total = store.list_runs(config={"lr": "0.1"})
    assert total == 3 and {r.id for r in runs} == {"run1", "run3", "run5"}
    assert {r.id for r in store.list_runs(config={"opt.name": "sgd", "lr": 0.01})[0]} == {"run4"}
    by_lr = [r.id for r in store.list_runs(project="p1", sort="-config.lr")[0]]
    assert set(by_lr[:2]) == {"run1", "run3"}


def test_config_filter_pages_in_order_and_returns_whole_runs(store: Store) -> None:
    for i in range(7):
        _run(
            store,
            f"c{i}",
            config={"lr": 0.1 if i % 2 else 0.01},
            summary={"loss": 10 - i} if i != 3 else {},
            environment={"hostname": f"h{i}"},
            notes=f"n{i}",
        )
        time.sleep(0.002)
    runs, total = store.list_runs(config={"lr": 0.1}, sort="created_at", limit=2, offset=1)
    assert total == 3 and [r.id for r in runs] == ["c3", "c5"]
    assert [r.environment["hostname"] for r in runs] == ["h3", "h5"]  # the whole row
    assert [r.notes for r in runs] == ["n3", "n5"]
    # A summary sort without a config filter: runs missing the key come last.
    runs, total = store.list_runs(sort="summary.loss", limit=10)
    assert total == 7 and [r.id for r in runs] == ["c6", "c5", "c4", "c2", "c1", "c0", "c3"]
    runs, _ = store.list_runs(sort="-summary.loss", limit=3, offset=5)
    assert [r.id for r in runs] == ["c6", "c3"]


def test_list_runs_rejects_unknown_sort_field(store: Store) -> None:
    with pytest.raises(ValueError, match="sort"):
        store.list_runs(sort="password")


def test_projects_count_their_runs(store: Store) -> None:
    _run(store, "a", project="alpha")
    _run(store, "b", project="alpha")
    _run(store, "c", project="beta")
    counts = {p.name: p.run_count for p in store.list_projects()}
    assert counts == {"alpha": 2, "beta": 1}


def test_media_round_trips_bytes(store: Store) -> None:
    _run(store, "img")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    info = store.add_media("img", "samples", 3, png, caption="first", width=2, height=1)
    listed = store.list_media("img")
    assert [(m.key, m.step, m.caption) for m in listed] == [("samples", 3, "first")]
    meta, data = store.get_media(info.id)
    assert data == png and meta.mime == "image/png"
    with pytest.raises(KeyError):
        store.get_media(info.id + 1000)


def test_alerts_are_listed_newest_first_per_run_and_project(store: Store) -> None:
    _run(store, "al1", project="px")
    _run(store, "al2", project="py")
    store.add_alert("al1", "nan", "loss is NaN", key="loss", step=4, value=math.nan)
    store.add_alert("al1", "spike", "loss spiked", key="loss", step=9, value=12.5)
    store.add_alert("al2", "custom", "hi")
    alerts = store.list_alerts("al1")
    assert [a.kind for a in alerts] == ["spike", "nan"]
    assert alerts[0].value == 12.5 and alerts[0].step == 9
    assert [a.run_id for a in store.list_alerts(project="py")] == ["al2"]
    assert len(store.list_alerts()) == 3


def test_delete_run_removes_its_metrics(store: Store) -> None:
    _run(store, "del")
    store.log_metrics("del", [("x", 0, 1.0, 0.0)])
    store.delete_run("del")
    with pytest.raises(RunNotFoundError):
        store.get_run("del")
    assert store.metric_keys("del") == {}


def test_ping_answers(store: Store) -> None:
    assert store.ping() is True


def test_run_ids_with_quotes_and_placeholders_are_stored_verbatim(store: Store) -> None:
    odd = "it's 100%?;--"
    _run(store, odd)
    store.log_metrics(odd, [("x", 0, 1.0, 0.0), ("x", 1, 2.0, 0.0)])
    assert store.metric_series(odd, "x").values == [1.0, 2.0]
    assert store.metric_keys(odd)["x"]["count"] == 2


def test_long_series_downsample_from_block_summaries_across_batches(store: Store) -> None:
    _run(store, "blocks")
    n = 30_000
    values = [math.sin(s / 500.0) for s in range(n)]
    values[777] = -40.0  # a dip and a spike inside one block, logged in different batches
    values[900] = 55.0
    values[20_000] = math.nan
    rows = [("y", s, v, 1000.0 + s) for s, v in enumerate(values)]
    store.log_metrics("blocks", rows[:800])  # the batch boundary splits block 3 (768..1023)
    store.log_metrics("blocks", rows[800:])
    for method in ("lttb", "minmax"):
        s = store.metric_series_downsampled("blocks", "y", points=100, method=method)
        assert len(s) <= 110, (method, len(s))
        assert s.steps[0] == 0 and s.steps[-1] == n - 1
        assert s.steps == sorted(s.steps) and len(set(s.steps)) == len(s.steps)
        got = dict(zip(s.steps, s.values, strict=True))
        assert got.get(900) == 55.0 and got.get(777) == -40.0, method
        assert 20_000 in got and math.isnan(got[20_000]), method
        for step, value in got.items():  # every point is a real logged point
            assert value == values[step] or (math.isnan(value) and math.isnan(values[step]))
        assert s.times[0] == 1000.0 and s.times[-1] == 1000.0 + n - 1


def _expected_band(values: list[float], lo: int, hi: int) -> tuple[float, float]:
    """numpy's finite min/max of the raw values at steps lo..hi (steps equal indices here)."""
    import numpy as np

    chunk = np.array(values[lo : hi + 1], dtype=np.float64)
    finite = chunk[np.isfinite(chunk)]
    return (float(finite.min()), float(finite.max())) if len(finite) else (math.nan, math.nan)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_envelope_gives_min_and_max_per_bucket_ignoring_nan_and_inf(store: Store) -> None:
    _run(store, "env")
    values = [float(s % 10) for s in range(100)]
    values[37] = 500.0  # a spike in bucket 3
    values[55] = math.nan  # NaN and +/-Inf are not part of any band
    values[71], values[72] = math.inf, -math.inf
    for s in range(90, 100):  # a bucket with no finite value at all
        values[s] = math.nan
    store.log_metrics("env", [("y", s, v, 1000.0 + s) for s, v in enumerate(values)])

    env = store.metric_envelope("env", "y", buckets=10)
    assert env.steps == list(range(0, 100, 10))
    assert env.last_steps == list(range(9, 100, 10))
    assert env.times == [1000.0 + s for s in env.steps]
    assert env.last_times == [1000.0 + s for s in env.last_steps]
    assert env.mins[:9] == [0.0] * 9
    assert env.maxs[:9] == [9.0, 9.0, 9.0, 500.0, 9.0, 9.0, 9.0, 9.0, 9.0]
    assert math.isnan(env.mins[9]) and math.isnan(env.maxs[9])

    # More buckets than points: one bucket per point, non-finite points give NaN.
    fine = store.metric_envelope("env", "y", buckets=1000)
    assert fine.steps == fine.last_steps == list(range(100))
    assert all(_same(a, b) for a, b in zip(fine.mins, values, strict=True) if math.isfinite(b))
    assert math.isnan(fine.mins[71]) and math.isnan(fine.maxs[72])
    part = store.metric_envelope("env", "y", buckets=2, min_step=30, max_step=39)
    assert (part.steps, part.last_steps) == ([30, 35], [34, 39])
    assert (part.mins, part.maxs) == ([0.0, 5.0], [4.0, 500.0])
    assert len(store.metric_envelope("env", "missing")) == 0
    with pytest.raises(ValueError, match="buckets"):
        store.metric_envelope("env", "y", buckets=0)


def test_long_series_envelope_from_block_summaries_matches_numpy(store: Store) -> None:
    from workbench_tracker.store.schema import BLOCK_STEPS

    _run(store, "envblocks")
    buckets = 20
    n = buckets * BLOCK_STEPS + 1000  # long enough for the per-block summaries
    values = [math.sin(s / 300.0) for s in range(n)]
    values[777] = 55.0  # a spike and a dip, logged in different batches of one block
    values[900] = -40.0
    values[3000] = math.nan
    values[4100] = math.inf  # a block whose summary min/max is not finite
    values[4101] = -math.inf
    for s in range(20 * BLOCK_STEPS, 21 * BLOCK_STEPS):  # a block of NaN only
        values[s] = math.nan
    rows = [("y", s, v, 1000.0 + s) for s, v in enumerate(values)]
    store.log_metrics("envblocks", rows[:800])
    store.log_metrics("envblocks", rows[800:])

    env = store.metric_envelope("envblocks", "y", buckets=buckets)
    assert 2 <= len(env) <= buckets
    assert env.steps[0] == 0 and env.last_steps[-1] == n - 1
    assert env.steps[1:] == [s + 1 for s in env.last_steps[:-1]]  # contiguous, in order
    # Buckets are whole blocks: that is what reading the summaries instead of the rows gives.
    assert all(s % BLOCK_STEPS == 0 for s in env.steps)
    assert env.times == [1000.0 + s for s in env.steps]
    assert env.last_times == [1000.0 + s for s in env.last_steps]
    for lo, hi, got_min, got_max in zip(env.steps, env.last_steps, env.mins, env.maxs, strict=True):
        want_min, want_max = _expected_band(values, lo, hi)
        assert _same(got_min, want_min) and _same(got_max, want_max), (lo, hi)
    assert max(env.maxs) == 55.0 and min(env.mins) == -40.0
    inf_bucket = next(i for i, hi in enumerate(env.last_steps) if hi >= 4100)
    assert math.isfinite(env.mins[inf_bucket]) and math.isfinite(env.maxs[inf_bucket])


def test_series_without_block_summaries_downsample_from_the_raw_rows(sqlite_url: str) -> None:
    """A database written before block summaries existed (or by a tool that skipped them)
    still charts every point: reads notice the summaries do not cover the key."""
    import sqlite3

    from workbench_tracker.store import get_store

    st = get_store(sqlite_url, cached=False)
    _run(st, "legacy")
    n = 30_000
    st.log_metrics("legacy", [("y", s, float(s % 977), 1.0 + s) for s in range(n)])
    st.close()
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    conn.execute("DELETE FROM metric_blocks WHERE block >= 10")
    conn.commit()
    conn.close()
    st = get_store(sqlite_url, cached=False)
    s = st.metric_series_downsampled("legacy", "y", points=100)
    assert s.steps[0] == 0 and s.steps[-1] == n - 1 and len(s) <= 110
    band = st.metric_envelope("legacy", "y", buckets=10)
    assert band.steps[0] == 0 and band.last_steps[-1] == n - 1
    assert max(band.maxs) == 976.0
    st.close()
