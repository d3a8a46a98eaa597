"""The artifacts page and lineage graph in a real headless Chromium (Debian's chromium)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _extras_fixtures import LiveServer
from tracker_testutil import BROWSER_MARKS

import workbench_tracker as wt
from workbench_tracker.store.sql import SQLStore
from workbench_tracker.viewer import create_app

pytestmark = BROWSER_MARKS


def test_artifacts_page_lists_versions_and_draws_lineage(tmp_path: Path, page: Any) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 'tracker.db'}")
    data = tmp_path / "data.txt"
    data.write_text("rows")
    with wt.init(project="ui", name="prep", store=store, capture_env=False) as prep:
        prep.log_artifact(data, "dataset", "dataset")
        data.write_text("more rows")
        prep.log_artifact(data, "dataset", "dataset", aliases=["best"])
    with wt.init(project="ui", name="train", store=store, capture_env=False) as train:
        train.use_artifact("dataset:best")
    with LiveServer(create_app(store)) as server:
        page.goto(server.url + "/artifacts.html?project=ui")
        page.wait_for_selector('#a-list tr[data-name="dataset"]')
        page.wait_for_selector("#lineage svg g.node")
        nodes = page.eval_on_selector_all(
            "#lineage svg g.node", "els => els.map(e => e.dataset.id)"
        )
        assert {f"run:{prep.id}", f"run:{train.id}", "artifact:dataset:v1"} <= set(nodes)
        assert page.locator("#lineage svg path.edge.used").count() == 1
        page.click('#a-list tr[data-name="dataset"]')
        page.wait_for_selector("#a-versions tbody tr")
        text = page.inner_text("#a-versions")
        assert "v1" in text and "v0" in text and "best" in text
        page.on("dialog", lambda d: d.accept())
        page.click("#a-delete")
        page.wait_for_selector("#a-error:not([hidden])")
        assert "used by run" in page.inner_text("#a-error")
        with page.expect_download() as dl:
            page.click('#a-versions a[href*="/v0/download"]')
        assert Path(dl.value.path()).read_bytes() == b"rows"
    store.close()
