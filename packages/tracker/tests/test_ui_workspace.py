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
        f"(n) => {{ const s = ({_DRAWN})({key!r}); return s && s.n === n; }}", arg=n,
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
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ui.screenshot(path=str(SCREENSHOTS / "tracker-live.png"), full_page=False)
    run.finish()
    ui.wait_for_selector("#run-status:has-text('finished')", timeout=15_000)
    assert re.search(r"loss\s+0\.022222", ui.inner_text("#summary"))
