"""Offline interactive API docs for the combined app.

FastAPI's default ``/docs`` loads Swagger UI from a CDN, which a machine without internet cannot
reach. We serve Swagger UI 5 from the ``swagger-ui-bundle-v2`` package (the dist files ship inside
the wheel; version 5 renders the OpenAPI 3.1 documents FastAPI produces). Without that package a
small self-contained page renders the same ``/openapi.json`` as a list of operations.

The schema itself is merged: the dev server's own routes plus each mounted FastAPI sub-app's
schema with its paths prefixed by its mount, so "Try it out" calls the real URLs.
"""

from __future__ import annotations

import html
from typing import Any

from ._components import Component

__all__ = ["FALLBACK_DOCS_HTML", "merge_openapi", "swagger_ui_dir"]


def swagger_ui_dir() -> str | None:
    """Directory holding swagger-ui-bundle.js and swagger-ui.css, or None when not installed."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = getattr(swagger_ui_bundle, "swagger_ui_path", None)
    return str(path) if path else None


def merge_openapi(base: dict[str, Any], components: list[Component]) -> dict[str, Any]:
    """Merge each component's OpenAPI schema into ``base`` under its mount prefix."""
    merged = dict(base)
    paths: dict[str, Any] = dict(merged.get("paths", {}))
    schemas: dict[str, Any] = dict(merged.get("components", {}).get("schemas", {}))
    tags: list[dict[str, Any]] = list(merged.get("tags", []))
    for comp in components:
        if not comp.available or not hasattr(comp.app, "openapi"):
            continue
        try:
            sub = comp.app.openapi()
        except Exception as exc:  # one broken schema must not hide the others
            tags.append({"name": comp.name, "description": f"schema unavailable: {exc}"})
            continue
        tags.append({"name": comp.name, "description": comp.title})
        for path, item in sub.get("paths", {}).items():
            full = f"{comp.mount}{path}" if comp.mount else path
            if full in paths:  # the dev server's own route shadows a root-mounted one
                continue
            new_item: dict[str, Any] = {}
            for method, op in item.items():
                if isinstance(op, dict) and "responses" in op:
                    op = dict(op)
                    op["tags"] = [comp.name, *[t for t in op.get("tags", []) if t != comp.name]]
                    if "operationId" in op:
                        op["operationId"] = f"{comp.name}_{op['operationId']}"
                new_item[method] = op
            paths[full] = new_item
        for name, schema in sub.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(name, schema)
    merged["paths"] = paths
    merged.setdefault("components", {})
    merged["components"] = {**merged["components"], "schemas": schemas}
    merged["tags"] = tags
    return merged


FALLBACK_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}
.op{{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.4rem .8rem}}
.m{{display:inline-block;width:4.5rem;font-weight:bold;text-transform:uppercase}}
pre{{background:#f6f6f6;padding:.5rem;overflow:auto}}</style></head>
<body><h1>{title}</h1>
<p>Swagger UI is not installed (<code>pip install swagger-ui-bundle-v2</code>); this page renders
<a href="/openapi.json">/openapi.json</a> without any network access.</p>
<div id="ops">loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {{
  const root = document.getElementById('ops'); root.textContent = '';
  for (const [path, item] of Object.entries(spec.paths || {{}})) {{
    for (const [method, op] of Object.entries(item)) {{
      const d = document.createElement('details'); d.className = 'op';
      const s = document.createElement('summary');
      s.innerHTML = '<span class="m"></span><code></code> <span></span>';
      s.children[0].textContent = method; s.children[1].textContent = path;
      s.children[2].textContent = op.summary || '';
      const pre = document.createElement('pre');
      pre.textContent = JSON.stringify(op, null, 2);
      d.append(s, pre); root.append(d);
    }}
  }}
}});
</script></body></html>
"""


def fallback_docs_html(title: str) -> str:
    """The self-contained docs page."""
    return FALLBACK_DOCS_HTML.format(title=html.escape(title))
