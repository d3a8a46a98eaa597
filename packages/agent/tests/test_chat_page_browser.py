"""The chat page in a real headless Chromium (Debian's /usr/bin/chromium via Playwright), served
by the agent app mounted under /agent as the dev server mounts it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from workbench_agent import (
    AgentRuntime,
    LLMResponse,
    ScriptedLLM,
    ToolCall,
    ToolRegistry,
    create_app,
    tool,
)

from ._servers import serve

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(timeout=None)
async def wait_long() -> str:
    """Waits a minute unless cancelled."""
    await asyncio.sleep(60)
    return "late"


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert not errors, errors


def test_chat_page_streams_an_answer_shows_tools_and_cancels(page: Any) -> None:
    llm = ScriptedLLM(
        [
            LLMResponse(tool_calls=[ToolCall(name="add", args={"a": 2, "b": 3})]),
            "答案是 5",
            LLMResponse(tool_calls=[ToolCall(name="wait_long")]),
        ]
    )
    parent = FastAPI()
    parent.mount("/agent", create_app(AgentRuntime(llm, ToolRegistry([add, wait_long]))))
    with serve(parent) as url:
        page.goto(url + "/agent/")
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('session')"
        )
        page.fill("#prompt", "二加三？")
        page.click("#send")
        page.wait_for_function("document.getElementById('log').textContent.includes('答案是 5')")
        log = page.inner_text("#log")
        assert "二加三？" in log and '→ add {"a":2,"b":3}' in log and "✓ add" in log
        assert llm.calls[0][-1].content == "二加三？"

        page.fill("#prompt", "wait")
        page.click("#send")
        page.wait_for_function("document.getElementById('log').textContent.includes('→ wait_long')")
        page.wait_for_function("!document.getElementById('cancel').disabled")
        page.click("#cancel")
        page.wait_for_function(
            "document.getElementById('log').textContent.includes('cancelled: cancelled from the chat page')"
        )
        assert "⏹ wait_long cancelled" in page.inner_text("#log")
