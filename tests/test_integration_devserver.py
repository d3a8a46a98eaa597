"""The combined server's own pages, against the real ``workbench dev`` with every part."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from wb_integration import DevServer

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


def test_every_part_is_ready_and_linked_from_the_landing_page(http: httpx.Client) -> None:
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["components"] == {"tracker": "ready", "agent": "ready", "serving": "ready"}
    page = http.get("/").text
    assert 'http-equiv="refresh"' not in page
    for part in ("tracker", "agent", "serving"):
        assert re.search(rf'id="part-{part}".*?data-state="ready"', page, re.S), part
    for link in ("/tracker/", "/agent/", "/api/v1/capabilities", "/v1/models", "/docs"):
        assert f'href="{link}"' in page
        assert http.get(link).status_code == 200, link


def test_openapi_documents_every_part_at_its_real_path(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/sample", "/v1/chat/completions", "/tracker/api/runs", "/agent/sessions"):
        assert path in paths, sorted(paths)[:50]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_swagger_ui_renders_offline_in_chromium(devserver: DevServer) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            outside: list[str] = []
            page.on(
                "request",
                lambda req: (
                    outside.append(req.url)
                    if not req.url.startswith(devserver.base_url)
                    and not req.url.startswith("data:")
                    else None
                ),
            )
            page.goto(f"{devserver.base_url}/docs")
            page.locator(".opblock").first.wait_for(timeout=30_000)
            assert page.locator(".opblock").count() > 20
            assert outside == []
        finally:
            browser.close()
