"""Monitors fire on crafted bad series, stay quiet on clean ones, and deliver alerts."""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from typing import Any

import pytest
import uvicorn
from _extras_fixtures import EngineStore, RunHandle
from fastapi import FastAPI, Request

from workbench_tracker.monitors import (
    DivergenceDetector,
    MetricMonitor,
    MonitorConfigError,
    NanInfDetector,
    PlateauDetector,
    SpikeDetector,
    attach_monitors,
)


def _clean_loss(n: int = 400, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [2.0 * math.exp(-i / 80) + 0.05 + rng.gauss(0, 0.01) for i in range(n)]


def _feed(det, series):
    return [a for i, v in enumerate(series) if (a := det.update("loss", i, v)) is not None]


def test_nan_detector_fires_once_per_episode_and_not_on_clean_series():
    assert _feed(NanInfDetector(), _clean_loss()) == []
    series = [1.0, 0.9, math.nan, math.nan, 0.8, math.inf]
    alerts = _feed(NanInfDetector(), series)
    assert [(a.step, a.kind) for a in alerts] == [(2, "nan"), (5, "nan")]
    assert "Inf" in alerts[1].message


def test_spike_detector_uses_robust_window():
    assert _feed(SpikeDetector(window=50, threshold=6), _clean_loss()) == []
    series = _clean_loss(200)
    series[150] = series[150] * 10
    alerts = _feed(SpikeDetector(window=50, threshold=6), series)
    assert [a.step for a in alerts] == [150]
    assert alerts[0].details["z"] > 6


def test_divergence_detector_needs_sustained_increase():
    assert _feed(DivergenceDetector(patience=10, tolerance=0.5), _clean_loss()) == []
    one_bad = _clean_loss(100)
    one_bad[60] = 50.0  # a single outlier is not divergence
    assert _feed(DivergenceDetector(patience=10, tolerance=0.5), one_bad) == []
    diverging = _clean_loss(100) + [0.5 * 1.1**i for i in range(40)]
    alerts = _feed(DivergenceDetector(patience=10, tolerance=0.5), diverging)
    assert len(alerts) == 1 and alerts[0].kind == "divergence"


def test_plateau_detector_fires_when_improvement_stops():
    assert _feed(PlateauDetector(window=50, min_delta=1e-3), [1 / (i + 1) for i in range(30)]) == []
    flat = [1 / (i + 1) for i in range(10)] + [0.1] * 80
    alerts = _feed(PlateauDetector(window=50, min_delta=1e-3), flat)
    assert len(alerts) == 1 and alerts[0].step == 59


def test_attached_monitors_write_alerts_to_the_store_per_metric_config(tmp_path):
    store = EngineStore(engine=None)  # type: ignore[arg-type]
    run = RunHandle("r1", "proj", store)
    mon = attach_monitors(run, {"loss": {"nan": True, "spike": {"window": 20}}, "*": {"nan": True}})
    for i, v in enumerate(_clean_loss(60)):
        run.log({"loss": v, "acc": 0.5, "note": "text is ignored"}, step=i)
    assert store.alerts == []
    run.log({"loss": 100.0, "acc": math.nan}, step=60)
    kinds = sorted((a["key"], a["kind"]) for a in store.alerts)
    assert kinds == [("acc", "nan"), ("loss", "spike")]
    assert all(a["run_id"] == "r1" for a in store.alerts)
    assert len(mon.alerts) == 2


def test_bad_monitor_config_names_the_key():
    with pytest.raises(MonitorConfigError, match=r"monitors.loss.bogus"):
        MetricMonitor({"loss": {"bogus": True}})
    with pytest.raises(MonitorConfigError, match=r"monitors.loss.spike"):
        MetricMonitor({"loss": {"spike": {"windw": 3}}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_webhook_posts_alert_json_to_a_real_http_receiver():
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, str]:
        received.append(await request.json())
        return {"ok": "yes"}

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        mon = MetricMonitor(
            {"loss": {"nan": True}, "webhook": f"http://127.0.0.1:{port}/hook"}, run_id="r9"
        )
        mon.observe({"loss": 1.0}, step=0)
        mon.observe({"loss": math.nan}, step=1)
        mon.close()
        assert len(received) == 1
        body = received[0]
        assert body["type"] == "alert"
        assert body["alert"]["kind"] == "nan" and body["alert"]["run_id"] == "r9"
        assert body["alert"]["value"] == "nan" and body["alert"]["step"] == 1
    finally:
        server.should_exit = True
        thread.join(10)


def test_monitors_on_a_real_run_store_alerts_in_the_tracker_store(tmp_path):
    import workbench_tracker as wt
    from workbench_tracker.store.sql import SQLStore

    store = SQLStore(f"sqlite:///{tmp_path / 'tracker.db'}")
    run = wt.init(project="p", store=store, capture_env=False)
    attach_monitors(run, {"loss": {"nan": True, "divergence": {"patience": 3, "warmup": 0}}})
    for v in [1.0, 0.5, 0.4, 5.0, 6.0, 7.0, math.nan]:
        run.log({"loss": v})
    run.finish()
    alerts = store.list_alerts(run.id)
    assert sorted((a.kind, a.step) for a in alerts) == [("divergence", 5), ("nan", 6)]
    assert all(a.key == "loss" for a in alerts)
    store.close()


@pytest.mark.slow
def test_alerts_from_a_training_run_are_pushed_live_over_sse(tmp_path):
    import httpx
    from _extras_fixtures import LiveServer

    import workbench_tracker as wt
    from workbench_core.sse import SSEDecoder
    from workbench_tracker.store.sql import SQLStore
    from workbench_tracker.viewer import create_app

    store = SQLStore(f"sqlite:///{tmp_path / 'tracker.db'}")
    run = wt.init(project="p", store=store, capture_env=False)
    attach_monitors(run, {"loss": {"nan": True}})
    with LiveServer(create_app(store)) as server, httpx.Client(timeout=30) as client:
        with client.stream(
            "GET", server.url + "/api/alerts/stream", params={"run_id": run.id, "poll": 0.05}
        ) as resp:
            assert resp.status_code == 200
            run.log({"loss": 1.0})
            run.log({"loss": math.nan})
            decoder = SSEDecoder()
            got = []
            for chunk in resp.iter_bytes():
                got += [e for e in decoder.feed(chunk) if e.event == "alert"]
                if got:
                    break
    alert = got[0].json()
    assert alert["kind"] == "nan" and alert["run_id"] == run.id and alert["step"] == 1
    run.finish()
    store.close()
