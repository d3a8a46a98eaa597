"""The web UI as a W&B user meets it, in a real headless Chromium: a live chart that follows a
logging run, the runs table (search, sortable and choosable columns), runs grouped by a config
key, parallel coordinates of config against a summary metric, several keys in one panel.

One viewer, one browser and one set of runs are shared by the module to keep it fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tracker_testutil import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, ServerThread

import workbench_tracker as wt

pytestmark = BROWSER_MARKS

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def viewer_mod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Any]]:
    from workbench_tracker.store import get_store
    from workbench_tracker.viewer import create_app

    root = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(root / "home"))
        mp.delenv("WORKBENCH_TRACKER_URL", raising=False)
        st = get_store(f"sqlite:///{root / 'viewer.db'}", cached=False)
        with ServerThread(create_app(st, poll_interval=0.2)) as server:
            yield server, st
        st.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def ui(browser: Any) -> Iterator[Any]:
    """A fresh page; any uncaught page error fails the test."""
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    pg.close()
    assert not errors, errors


# What Plotly drew for a chart: the x range of its axis, the number of points it computed for
# the first line trace, and the pixel x of the last vertex of the drawn SVG path next to where
# the axis puts the last step.
_DRAWN = """(key) => {
  const gd = document.querySelector(`.card[data-key="${key}"] .chart`);
  if (!gd || !gd._fullLayout || !gd.calcdata) return null;
  const i = gd._fullData.findIndex((t) => t.meta !== 'band');
  const cd = gd.calcdata[i].filter((p) => p.x !== undefined && !Number.isNaN(p.x));
  const path = gd.querySelectorAll('.scatterlayer .trace')[i].querySelector('.js-line');
  const d = path ? path.getAttribute('d') : '';
  const nums = (d.match(/-?[0-9.]+(e-?[0-9]+)?/g) || []).map(Number);
  const ax = gd._fullLayout.xaxis;
  const lastX = cd.length ? cd[cd.length - 1].x : null;
  return {range: ax.range.slice(), n: cd.length, lastX,
          pathLastPx: nums.length >= 2 ? nums[nums.length - 2] : null,
          axisLastPx: lastX === null ? null : ax.l2p(lastX)};
}"""


def _wait_drawn(page: Any, key: str, n: int) -> dict[str, Any]:
    page.wait_for_function(
        f"(n) => {{ const s = ({_DRAWN})({key!r}); return s && s.n === n; }}",
        arg=n,
        timeout=15_000,
    )
    drawn: dict[str, Any] = page.evaluate(_DRAWN, key)
    return drawn


def test_live_chart_redraws_as_the_run_logs_and_after_a_reload(viewer_mod: Any, ui: Any) -> None:
    server, store = viewer_mod
    run = wt.init(project="live", name="live-run", store=store, flush_interval=0.05)
    for s in range(10):
        run.log({"loss": 1.0 / (s + 1)})
    run.flush()
    ui.goto(f"{server.url}/run.html?id={run.id}")
    ui.wait_for_selector("#live:has-text('live')")
    drawn = _wait_drawn(ui, "loss", 10)
    assert drawn["range"][1] >= 9

    # The run keeps logging while the page is open: the drawn line and axis must follow.
    for s in range(10, 30):
        run.log({"loss": 1.0 / (s + 1)})
    run.flush()
    drawn = _wait_drawn(ui, "loss", 30)
    lo, hi = drawn["range"]
    assert lo <= 0 and hi >= 29 and drawn["lastX"] == 29
    assert abs(drawn["pathLastPx"] - drawn["axisLastPx"]) < 1.5  # the line reaches step 29
    # The summary panel follows too (the SDK persists the last value while running).
    ui.wait_for_function(
        "() => /loss\\s+0\\.033333/.test(document.querySelector('#summary').innerText)",
        timeout=15_000,
    )

    # A reload covers everything logged so far, and keeps following.
    ui.reload()
    ui.wait_for_selector("#live:has-text('live')")
    drawn = _wait_drawn(ui, "loss", 30)
    assert drawn["range"][1] >= 29
    for s in range(30, 45):
        run.log({"loss": 1.0 / (s + 1)})
    run.flush()
    drawn = _wait_drawn(ui, "loss", 45)
    assert drawn["range"][1] >= 44 and drawn["lastX"] == 44
    assert abs(drawn["pathLastPx"] - drawn["axisLastPx"]) < 1.5
    ui.wait_for_function(
        "() => /loss\\s+0\\.022222/.test(document.querySelector('#summary').innerText)",
        timeout=15_000,
    )
    assert ui.inner_text("#run-status") == "running"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ui.screenshot(path=str(SCREENSHOTS / "tracker-live.png"), full_page=False)
    run.finish()
    ui.wait_for_selector("#run-status:has-text('finished')", timeout=15_000)
    assert re.search(r"loss\s+0\.022222", ui.inner_text("#summary"))


def _loss(lr: float, seed: int, step: int) -> float:
    return lr * 10 / (step + 1) + seed * 0.04


@pytest.fixture(scope="module")
def sweep(viewer_mod: Any) -> dict[str, dict[str, Any]]:
    """A small sweep in project "sweep": lr x seed x optimizer, 20 steps of loss and acc each,
    and a baseline run; returns run id -> {"name", "config", "summary"}."""
    import time

    from workbench_tracker.store import RunInfo

    _, store = viewer_mod
    made: dict[str, dict[str, Any]] = {}
    for lr in (0.1, 0.01, 0.05):
        for seed in range(2):
            rid = f"sw{lr}-{seed}".replace(".", "")
            cfg = {"lr": lr, "seed": seed, "opt": "adam" if lr != 0.05 else "sgd"}
            final = _loss(lr, seed, 19)
            summary = {"loss": final, "acc": 1 - final}
            store.create_run(
                RunInfo(
                    id=rid,
                    project="sweep",
                    name=f"sweep-lr{lr}-s{seed}",
                    config=cfg,
                    summary=summary,
                    status="finished",
                )
            )
            rows = [("loss", s, _loss(lr, seed, s), 1000.0 + s) for s in range(20)]
            rows += [("acc", s, 1 - _loss(lr, seed, s), 1000.0 + s) for s in range(20)]
            store.log_metrics(rid, rows)
            made[rid] = {"name": f"sweep-lr{lr}-s{seed}", "config": cfg, "summary": summary}
            time.sleep(0.002)
    return made


_ROW_NAMES = "() => [...document.querySelectorAll('#runs tbody tr[data-run-id] td:nth-child(2) a')].map(a => a.textContent)"


def test_runs_table_search_sortable_and_choosable_columns(
    viewer_mod: Any, sweep: dict[str, Any], ui: Any
) -> None:
    server, _ = viewer_mod
    ui.goto(f"{server.url}/?project=sweep")
    ui.wait_for_function(f"() => ({_ROW_NAMES})().length === 6")
    # Default columns: the fixed ones plus the first config and summary keys.
    heads = ui.eval_on_selector_all(
        "#runs thead th[data-sort]", "ths => ths.map(t => t.dataset.sort)"
    )
    assert {"name", "config.lr", "config.opt", "config.seed", "summary.acc", "summary.loss"} <= set(
        heads
    )

    # Search by part of the name, any case, as you type.
    ui.fill("#f-search", "LR0.1-")
    ui.wait_for_function(f"() => ({_ROW_NAMES})().length === 2")
    assert sorted(ui.evaluate(_ROW_NAMES)) == ["sweep-lr0.1-s0", "sweep-lr0.1-s1"]
    ui.fill("#f-search", "")
    ui.wait_for_function(f"() => ({_ROW_NAMES})().length === 6")

    # Click a summary column: ascending, click again: descending.
    by_loss = [v["name"] for v in sorted(sweep.values(), key=lambda v: v["summary"]["loss"])]
    ui.click('#runs th[data-sort="summary.loss"]')
    ui.wait_for_selector('#runs th[data-sort="summary.loss"][aria-sort="ascending"]')
    ui.wait_for_function(
        f"(want) => JSON.stringify(({_ROW_NAMES})()) === JSON.stringify(want)", arg=by_loss
    )
    ui.click('#runs th[data-sort="summary.loss"]')
    ui.wait_for_selector('#runs th[data-sort="summary.loss"][aria-sort="descending"]')
    ui.wait_for_function(
        f"(want) => JSON.stringify(({_ROW_NAMES})()) === JSON.stringify(want)", arg=by_loss[::-1]
    )
    ui.click('#runs th[data-sort="name"]')
    ui.wait_for_function(
        f"(want) => JSON.stringify(({_ROW_NAMES})()) === JSON.stringify(want)",
        arg=sorted(v["name"] for v in sweep.values()),
    )

    # Choose columns: hide config.seed and the tags; the choice survives a reload.
    ui.click("details.columns summary")
    ui.uncheck('.col-pick[value="config.seed"]')
    ui.uncheck('.col-pick[value="tags"]')
    assert ui.query_selector('#runs th[data-sort="config.seed"]') is None
    assert ui.query_selector('#runs td[data-col="config.seed"]') is None
    lr_cells = ui.eval_on_selector_all(
        '#runs td[data-col="config.lr"]', "tds => tds.map(t => t.textContent)"
    )
    assert sorted(lr_cells) == sorted(str(v["config"]["lr"]) for v in sweep.values())
    ui.reload()
    ui.wait_for_function(f"() => ({_ROW_NAMES})().length === 6")
    assert ui.query_selector('#runs th[data-sort="config.seed"]') is None
    assert ui.query_selector('#runs th[data-sort="config.lr"]') is not None
    ui.screenshot(
        path=str(SCREENSHOTS / "tracker-runs-table.png"),
        clip={"x": 0, "y": 0, "width": 1280, "height": 520},
    )


_TRACES = """(keys) => {
  const gd = document.querySelector(`.panel[data-keys="${keys}"] .chart`);
  if (!gd || !gd.calcdata) return null;
  return gd._fullData.map((t, i) => ({name: t.name, meta: t.meta, fill: t.fill,
    x: gd.calcdata[i].map((p) => p.x), y: gd.calcdata[i].map((p) => p.y)}));
}"""


def test_runs_grouped_by_a_config_key_draw_mean_and_min_max_band(
    viewer_mod: Any, sweep: dict[str, Any], ui: Any
) -> None:
    server, _ = viewer_mod
    ui.goto(f"{server.url}/?project=sweep&group_by=lr&panels=loss;loss,acc")
    ui.wait_for_function(f"() => {{ const t = ({_TRACES})('loss'); return t && t.length === 9; }}")
    traces = ui.evaluate(_TRACES, "loss")
    # Three lr groups of two seeds: a band (max, then min filled up to it) and a mean line each.
    bands = [t for t in traces if t["meta"] == "band"]
    means = [t for t in traces if t["meta"] == "mean"]
    assert len(bands) == 6 and [b["fill"] for b in bands].count("tonexty") == 3
    assert [m["name"] for m in means] == [
        "lr=0.01 (mean of 2)",
        "lr=0.05 (mean of 2)",
        "lr=0.1 (mean of 2)",
    ]
    for lr, mean in zip((0.01, 0.05, 0.1), means, strict=True):
        assert mean["x"] == list(range(20))
        want = [(_loss(lr, 0, s) + _loss(lr, 1, s)) / 2 for s in range(20)]
        assert mean["y"] == pytest.approx(want)
    hi, lo = bands[4], bands[5]  # lr=0.1
    assert hi["y"] == pytest.approx([_loss(0.1, 1, s) for s in range(20)])
    assert lo["y"] == pytest.approx([_loss(0.1, 0, s) for s in range(20)])

    # Several keys in one panel: a mean line of each key for each group.
    ui.wait_for_function(
        f"() => {{ const t = ({_TRACES})('loss,acc'); return t && t.length === 18; }}"
    )
    names = [t["name"] for t in ui.evaluate(_TRACES, "loss,acc") if t["meta"] == "mean"]
    assert sum(n.startswith("loss · lr=") for n in names) == 3
    assert sum(n.startswith("acc · lr=") for n in names) == 3
    ui.screenshot(path=str(SCREENSHOTS / "tracker-grouped.png"), full_page=True)

    # Regroup by optimizer: two groups (adam has four runs, sgd two); add a panel from the UI.
    ui.select_option("#g-by", "opt")
    ui.wait_for_selector('.panel[data-keys="loss"][data-groups="2"]')
    ui.wait_for_function(
        f"() => ({_TRACES})('loss').filter(t => t.meta === 'mean').map(t => t.name).join() ==="
        " 'opt=adam (mean of 4),opt=sgd (mean of 2)'"
    )
    ui.select_option("#g-keys", ["acc"])
    ui.click("#g-add")
    ui.wait_for_selector('.panel[data-keys="acc"][data-groups="2"]')
    assert "panels=loss%3Bloss%2Cacc%3Bacc" in ui.url and "group_by=opt" in ui.url


def test_parallel_coordinates_of_config_against_a_summary_metric(
    viewer_mod: Any, sweep: dict[str, Any], ui: Any
) -> None:
    server, _ = viewer_mod
    ui.goto(f"{server.url}/?project=sweep")
    ui.wait_for_selector("#pc-metric option[value='loss']", state="attached")
    ui.select_option("#pc-metric", "loss")
    ui.wait_for_selector('#parcoords[data-runs="6"] .parcoords')
    dims = ui.evaluate(
        "() => document.querySelector('#parcoords').data[0].dimensions"
        ".map(d => ({label: d.label, values: Array.from(d.values), ticktext: d.ticktext || null}))"
    )
    # Config keys that differ between the runs, then the metric; text values get one tick each.
    assert [d["label"] for d in dims] == ["lr", "opt", "seed", "loss"]
    got = sorted(zip(*(d["values"] for d in dims), strict=True))
    want = sorted(
        (
            v["config"]["lr"],
            ["adam", "sgd"].index(v["config"]["opt"]),
            v["config"]["seed"],
            v["summary"]["loss"],
        )
        for v in sweep.values()
    )
    assert got == want  # JSON round-trips floats exactly
    assert dims[1]["ticktext"] == ["adam", "sgd"]
    # What Plotly drew: one axis per dimension with its title.
    titles = ui.eval_on_selector_all(
        "#parcoords text.axis-title", "ts => ts.map(t => t.textContent)"
    )
    assert titles == ["lr", "opt", "seed", "loss"]
    ui.locator("#parcoords").screenshot(path=str(SCREENSHOTS / "tracker-parcoords.png"))

    # Choosing the axes: only lr against the metric.
    ui.select_option("#pc-keys", ["lr"])
    ui.wait_for_function(
        "() => document.querySelector('#parcoords').data[0].dimensions.map(d => d.label).join() === 'lr,loss'"
    )


def test_several_keys_in_one_panel_on_the_run_page(
    viewer_mod: Any, sweep: dict[str, Any], ui: Any
) -> None:
    server, _ = viewer_mod
    rid = next(iter(sweep))
    ui.goto(f"{server.url}/run.html?id={rid}")
    ui.wait_for_selector('.card[data-key="acc"] .main-svg')
    ui.select_option("#panel-keys", ["loss", "acc"])
    ui.click("#add-panel")
    ui.wait_for_selector('.combo[data-keys="acc,loss"] .main-svg')
    combo = "document.querySelector('.combo[data-keys=\"acc,loss\"] .chart')"
    drawn = ui.evaluate(
        f"() => {combo}._fullData.map((t, i) => [t.name, {combo}.calcdata[i].length])"
    )
    assert drawn == [["acc", 20], ["loss", 20]]
    assert "panels=acc%2Closs" in ui.url
    ui.reload()  # the panel is in the URL
    ui.wait_for_selector('.combo[data-keys="acc,loss"] .main-svg')
