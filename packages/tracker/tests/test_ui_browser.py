"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium via Playwright)."""

from __future__ import annotations

import time
from typing import Any

from tracker_testutil import BROWSER_MARKS

import workbench_tracker as wt

pytestmark = BROWSER_MARKS


def test_runs_table_run_page_and_live_chart_update(viewer: Any, page: Any) -> None:
    server, store = viewer
    run = wt.init(
        project="ui",
        name="browser-run",
        config={"lr": 0.3},
        tags=["web"],
        store=store,
        flush_interval=0.05,
    )
    for s in range(10):
        run.log({"loss": 1.0 / (s + 1)})
    run.flush()

    page.goto(server.url + "/")
    page.wait_for_selector(f'tr[data-run-id="{run.id}"]')
    assert "browser-run" in page.inner_text("#runs")
    page.fill("#f-config", "lr=0.9")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("text=no runs match")
    page.fill("#f-config", "lr=0.3")
    page.click("#filters button[type=submit]")
    page.click(f'tr[data-run-id="{run.id}"] a')

    page.wait_for_selector('.card[data-key="loss"][data-points="10"]')
    page.wait_for_selector('.card[data-key="loss"] .main-svg')  # plotly rendered the chart
    assert page.inner_text("#run-title") == "browser-run"
    assert "lr" in page.inner_text("#config")
    page.wait_for_selector("#live:has-text('live')")

    for s in range(10, 25):
        run.log({"loss": 1.0 / (s + 1)})
    run.flush()
    page.wait_for_selector('.card[data-key="loss"][data-points="25"]', timeout=15_000)
    # What Plotly computed and drew, not the (mutable) input arrays: those grew while the
    # chart stayed frozen at the first 10 points.
    page.wait_for_function(
        "() => document.querySelector('.card[data-key=\"loss\"] .chart').calcdata[0].length === 25",
        timeout=15_000,
    )

    run.alert("spike", "loss jumped", key="loss", step=24)
    run.finish()
    page.wait_for_selector("#run-status:has-text('finished')", timeout=15_000)
    page.wait_for_selector(".alert:has-text('loss jumped')", timeout=15_000)
    page.check("#logy")
    page.fill("#smoothing", "0.6")
    page.dispatch_event("#smoothing", "input")
    time.sleep(0.2)
    assert (
        page.evaluate(
            "() => document.querySelector('.card[data-key=\"loss\"] .chart').layout.yaxis.type"
        )
        == "log"
    )


def test_compare_page_shows_config_diff(viewer: Any, page: Any) -> None:
    server, store = viewer
    ids = []
    for lr in (0.1, 0.2):
        with wt.init(project="cmp", config={"lr": lr, "same": 1}, store=store) as r:
            r.log({"loss": lr})
        ids.append(r.id)
    page.goto(f"{server.url}/compare.html?runs={','.join(ids)}")
    page.wait_for_selector("#diff tbody tr th:has-text('lr')")
    assert "same" not in page.inner_text("#diff tbody")
    page.wait_for_selector('.card[data-key="loss"] .main-svg')
    traces = page.evaluate(
        "() => document.querySelector('.card[data-key=\"loss\"] .chart').data.map(t => t.y[0])"
    )
    assert sorted(traces) == [0.1, 0.2]  # both runs overlaid on one chart

    # The compare page has the run page's band and x-axis controls: one band per run.
    page.check("#band")
    page.wait_for_function(
        "() => document.querySelector('.card[data-key=\"loss\"] .chart')"
        ".data.filter(t => t.fill === 'tonexty').length === 2"
    )
    page.select_option("#xaxis", "time")
    page.wait_for_function(
        "() => document.querySelector('.card[data-key=\"loss\"] .chart')"
        ".layout.xaxis.title.text === 'seconds'"
    )


def test_flat_series_is_drawn_on_an_axis_around_its_value(viewer: Any, page: Any) -> None:
    """A constant 0.01 must not sit on a -1..1 axis where it reads as zero."""
    server, store = viewer
    with wt.init(project="ui", name="flat-run", store=store) as run:
        for _ in range(20):
            run.log({"lr": 0.01, "loss": 1.0})
        run.log({"loss": 0.5})
    page.goto(f"{server.url}/run.html?id={run.id}")
    lr = "document.querySelector('.card[data-key=\"lr\"] .chart')"
    page.wait_for_selector('.card[data-key="lr"] .main-svg')
    lo, hi = page.evaluate(f"() => {lr}._fullLayout.yaxis.range")
    assert lo < 0.01 < hi and hi - lo < 0.01
    page.check("#logy")
    page.wait_for_function(f"() => {lr}.layout.yaxis.type === 'log'")
    lo, hi = page.evaluate(f"() => {lr}._fullLayout.yaxis.range")  # log10 units
    assert lo < -2 < hi and hi - lo <= 1
    # A series that moves keeps Plotly's own autorange.
    loss = "document.querySelector('.card[data-key=\"loss\"] .chart')"
    assert page.evaluate(f"() => {loss}.layout.yaxis.autorange") is True


_CHART = "document.querySelector('.card[data-key=\"loss\"] .chart')"


def test_min_max_band_toggles_fill_traces_behind_the_line(viewer: Any, page: Any) -> None:
    server, store = viewer
    run = wt.init(project="ui", name="band-run", store=store, flush_interval=0.05)
    for s in range(3000):
        run.log({"loss": 5.0 if s == 1234 else 1.0 + (s % 10) / 10})
    run.flush()

    page.goto(f"{server.url}/run.html?id={run.id}")
    page.wait_for_selector('.card[data-key="loss"] .main-svg')
    page.wait_for_selector("#live:has-text('live')")
    assert page.evaluate(f"() => {_CHART}.data.filter(t => t.fill === 'tonexty').length") == 0

    page.check("#band")
    page.wait_for_function(f"() => {_CHART}.data.some(t => t.fill === 'tonexty')")
    traces = page.evaluate(
        f"() => {_CHART}.data.map(t => ({{name: t.name, fill: t.fill || null, x: t.x, y: t.y,"
        " legend: t.showlegend !== false, hover: t.hoverinfo || null}))"
    )
    # max, then min filled up to it, then the line drawn over both.
    assert [t["fill"] for t in traces] == [None, "tonexty", None]
    hi, lo, line = traces
    assert not hi["legend"] and not lo["legend"] and hi["hover"] == lo["hover"] == "skip"
    assert line["name"] == "band-run" and len(hi["x"]) == len(lo["x"]) == 2 * 500
    assert hi["x"][0] == 0 and hi["x"][-1] == 2999  # the band spans the whole series
    assert max(hi["y"]) == 5.0 and min(lo["y"]) == 1.0
    assert all(a <= b for a, b in zip(lo["y"], hi["y"], strict=True))

    # x as time: the band moves onto seconds since the first point, like the line.
    page.select_option("#xaxis", "time")
    page.wait_for_function(f"() => {_CHART}.layout.xaxis.title.text === 'seconds'")
    band_x, line_x = page.evaluate(f"() => [{_CHART}.data[0].x, {_CHART}.data[2].x]")
    assert band_x[0] == line_x[0] == 0 and abs(band_x[-1] - line_x[-1]) < 1e-6
    page.check("#logy")
    page.wait_for_function(f"() => {_CHART}.layout.yaxis.type === 'log'")
    assert page.evaluate(f"() => {_CHART}.data.filter(t => t.fill === 'tonexty').length") == 1

    # Live points still arrive with the band on; the band keeps covering the fetched part.
    before = int(page.get_attribute('.card[data-key="loss"]', "data-points") or 0)
    for _ in range(5):
        run.log({"loss": 2.0})
    run.flush()
    page.wait_for_selector(f'.card[data-key="loss"][data-points="{before + 5}"]', timeout=15_000)
    assert page.evaluate(f"() => {_CHART}.data.length") == 3

    page.uncheck("#band")
    page.wait_for_function(f"() => {_CHART}.data.length === 1")
    run.finish()
