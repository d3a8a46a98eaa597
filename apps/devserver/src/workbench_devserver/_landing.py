"""The landing page at ``/``: every URL of the dev server and which parts are ready."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_landing"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.card{border:1px solid #ddd;border-radius:8px;padding:1rem;margin:1rem 0}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;font-size:.85rem;margin-left:.5rem}
.ready{background:#d4f5dc;color:#11632a} .starting{background:#fff3c4;color:#7a5b00}
.missing{background:#eee;color:#555} .failed{background:#ffd9d9;color:#8a1111}
code{background:#f4f4f4;padding:0 .2rem} li{margin:.2rem 0}
"""


def _badge(state: str) -> str:
    cls = {
        "ready": "ready",
        "starting": "starting",
        "not installed": "missing",
        "disabled": "missing",
    }.get(state, "failed")
    return (
        f'<span class="badge {cls}" data-state="{html.escape(state)}">{html.escape(state)}</span>'
    )


def render_landing(status: dict[str, Any]) -> str:
    """HTML for ``/`` from the same status dict ``/devserver/status`` returns."""
    cards = []
    for comp in status["components"]:
        links = "".join(
            f'<li><a href="{html.escape(path)}">{html.escape(label)}</a> '
            f"<code>{html.escape(path)}</code></li>"
            for label, path in comp["links"]
        )
        extra = ""
        if comp.get("llm"):
            extra += f"<p>LLM: {html.escape(str(comp['llm']))}</p>"
        if comp.get("detail") and comp["state"] != "ready":
            extra += f"<p><small>{html.escape(str(comp['detail'])[:300])}</small></p>"
        cards.append(
            f'<div class="card" id="part-{html.escape(comp["name"])}">'
            f"<h2>{html.escape(comp['title'])}{_badge(comp['state'])}</h2>"
            f"<ul>{links}</ul>{extra}</div>"
        )
    overall = "ready" if status["ready"] else "starting"
    # While parts warm up the page reloads itself, so it turns green without the user's help.
    refresh = "" if status["ready"] else '<meta http-equiv="refresh" content="3">'

    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Workbench dev server</title>{refresh}
<style>{_CSS}</style></head><body>
<h1>Workbench{_badge(overall)}</h1>
<p class="sub">serving, tracker and agent in one process &middot; home
<code>{html.escape(status["home"])}</code></p>
<div class="card"><h2>Server</h2><ul>
<li><a href="/docs">Interactive API docs</a> <code>/docs</code> (offline Swagger UI)</li>
<li><a href="/openapi.json">OpenAPI schema</a> <code>/openapi.json</code></li>
<li><a href="/healthz">Liveness</a> <code>/healthz</code></li>
<li><a href="/readyz">Readiness</a> <code>/readyz</code></li>
<li><a href="/devserver/status">Status JSON</a> <code>/devserver/status</code></li>
</ul></div>
{"".join(cards)}
</body></html>"""
