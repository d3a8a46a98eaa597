"""One ASGI app: serving, tracker and agent behind a landing page.

Layout::

    /                 landing page (links, which parts are ready)
    /healthz /readyz  liveness; readiness = every composed part says it is ready
    /docs             Swagger UI served from the installed swagger-ui-bundle-v2 (no CDN)
    /openapi.json     the merged schema of every part, paths as they are really served
    /devserver/status the landing page's data as JSON
    /tracker/...      workbench_tracker's viewer (UI + /tracker/api/...)
    /agent/...        workbench_agent's app (chat page + sessions API)
    /api/v1, /v1, ... workbench_serving's app, mounted at the root as the fallback so its own
                      paths stay exactly as they are when it runs alone

Starlette does not run the lifespans of mounted apps, so the parent lifespan runs them explicitly
(see :func:`workbench_devserver._components.run_lifespans`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from ._agent_llm import CheckpointLLM
from ._components import Component, build_components, probe, run_lifespans
from ._docs import fallback_docs_html, merge_openapi, swagger_ui_dir
from ._landing import render_landing
from ._settings import DevServerSettings, serving_api_keys

__all__ = ["create_app", "print_banner"]

log = logging.getLogger("workbench.devserver")

_STATIC = "/devserver/static/swagger-ui"


def _state_of(comp: Component, ready: bool, detail: str) -> str:
    if not comp.installed:
        return "not installed"
    if comp.error:
        return "failed"
    if ready:
        return "ready"
    return "starting"


async def collect_status(
    components: list[Component], settings: DevServerSettings
) -> dict[str, Any]:
    """Probe every part concurrently and describe the whole server."""
    results = await asyncio.gather(*(probe(c) for c in components))
    parts = []
    ready_all = True
    for comp, (ready, detail) in zip(components, results, strict=True):
        state = _state_of(comp, ready, detail)
        if state in ("starting", "failed"):
            ready_all = False
        parts.append(
            {
                "name": comp.name,
                "title": comp.title,
                "mount": comp.mount or "/",
                "state": state,
                "detail": detail if state != "ready" else None,
                "links": comp.links if comp.available else [],
                **comp.info,
                **({"llm": comp.llm.description} if comp.llm is not None else {}),
            }
        )
    return {
        "ready": ready_all,
        "base_url": settings.base_url,
        "home": str(settings.home),
        "components": parts,
    }


def print_banner(settings: DevServerSettings, components: list[Component]) -> None:
    """Print (with rich) where everything is, so the first screen of ``workbench dev`` is a map."""
    from rich.console import Console
    from rich.table import Table

    base = settings.base_url
    table = Table(title=f"Workbench dev server at {base}", show_lines=False)
    table.add_column("part")
    table.add_column("status")
    table.add_column("where")
    table.add_row("landing page", "ready", f"{base}/")
    table.add_row("API docs", "ready", f"{base}/docs")
    for comp in components:
        status = (
            "not installed"
            if not comp.installed
            else (comp.error or ("warming up" if comp.name == "serving" else "started"))
        )
        where = ", ".join(f"{base}{path}" for _, path in comp.links) if comp.available else "-"
        table.add_row(comp.title, status, where)
    table.add_row("data", "", str(settings.home))
    Console(stderr=True).print(table)


class AgentLLMBody(BaseModel):
    """Body of ``POST /devserver/agent/llm``."""

    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="served model name (a checkpoint's model_name); null = the default LLM",
    )


def _error(status: int, type_: str, message: str, param: str | None) -> Any:
    """The error body every Workbench server uses."""
    import uuid

    rid = "req_" + uuid.uuid4().hex[:16]
    body: dict[str, Any] = {"type": type_, "message": message, "request_id": rid}
    if param is not None:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status, headers={"X-Request-ID": rid})


def _first_key() -> str | None:
    keys = serving_api_keys()
    return keys[0] if keys else None


def _redirect_to(target: str) -> Any:
    """A route handler sending ``/tracker`` to ``/tracker/`` (a Mount only matches below it)."""
    from starlette.responses import RedirectResponse

    # A plain Starlette route: FastAPI would treat the parameter as a query field.
    async def redirect(request: Request) -> RedirectResponse:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(target + query, status_code=307)

    return redirect


def create_app(
    settings: DevServerSettings | None = None,
    *,
    components: list[Component] | None = None,
    banner: bool = False,
) -> FastAPI:
    """Build the combined dev server app.

    Args:
        settings: where it listens and what it composes; read from the environment when None.
        components: pre-built parts (tests inject their own); built from ``settings`` when None.
        banner: print the rich start-up map once the parts have started.

    Returns:
        A FastAPI app whose lifespan runs every composed part's lifespan.
    """
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    settings = settings or DevServerSettings()
    comps = components if components is not None else build_components(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with run_lifespans(comps) as state:
            if banner:
                print_banner(settings, comps)
            yield state

    app = FastAPI(
        title="Workbench dev server",
        version="0.1.0",
        description="Serving, tracker and agent in one process.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.devserver_settings = settings
    keys = serving_api_keys()
    if keys:
        from ._auth import PartsKeyMiddleware

        app.add_middleware(PartsKeyMiddleware, keys=keys)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        loc = [str(p) for p in (errors[0].get("loc", ()) if errors else ())]
        param = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
            for e in errors
        )
        return _error(422, "invalid_request", message or "invalid request", param or "body")  # type: ignore[no-any-return]

    app.state.components = comps

    @app.get("/", response_class=HTMLResponse, include_in_schema=False, response_model=None)
    async def landing() -> HTMLResponse:
        return HTMLResponse(render_landing(await collect_status(comps, settings)))

    @app.get("/healthz", tags=["devserver"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers (says nothing about models)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["devserver"], response_model=None)
    async def readyz() -> JSONResponse:
        """Ready when every composed part is: models loaded, store open, agent up."""
        status = await collect_status(comps, settings)
        body = {
            "status": "ready" if status["ready"] else "starting",
            "components": {c["name"]: c["state"] for c in status["components"]},
        }
        return JSONResponse(body, status_code=200 if status["ready"] else 503)

    @app.get("/devserver/status", tags=["devserver"])
    async def devserver_status() -> dict[str, Any]:
        """What the landing page shows, as JSON."""
        return await collect_status(comps, settings)

    agent = next((c for c in comps if c.name == "agent" and c.llm is not None), None)
    original_llm = (agent.llm.inner, agent.llm.description) if agent is not None else None

    def _check_key(request: Request) -> JSONResponse | None:
        keys = serving_api_keys()
        if not keys:
            return None
        from workbench_serving.auth import extract_key  # keys are serving's; so is the rule

        if extract_key(list(request.scope.get("headers", []))) in keys:
            return None
        return _error(401, "authentication_error", "a valid API key is required", None)

    def _llm_state() -> dict[str, Any]:
        if agent is None:
            return {"llm": None, "model": None, "switchable": False}
        inner = agent.llm.inner
        model = inner.model if isinstance(inner, CheckpointLLM) else None
        return {"llm": agent.llm.description, "model": model, "switchable": True}

    @app.get("/devserver/agent/llm", tags=["devserver"])
    async def get_agent_llm() -> dict[str, Any]:
        """Which LLM the agent runs on (``model`` is set while it runs on a served checkpoint)."""
        return _llm_state()

    @app.post("/devserver/agent/llm", tags=["devserver"], response_model=None)
    async def set_agent_llm(body: AgentLLMBody, request: Request) -> JSONResponse:
        """Put the agent on a served model (e.g. the demo's fine-tuned checkpoint), or back."""
        denied = _check_key(request)
        if denied is not None:
            return denied
        if agent is None or original_llm is None:
            return _error(
                409, "conflict", "the agent is not composed with a switchable LLM", "model"
            )
        if body.model is None:
            agent.llm.switch(*original_llm)
        else:
            llm = CheckpointLLM(settings.base_url, body.model, api_key=_first_key())
            agent.llm.switch(llm, llm.describe())
        return JSONResponse(_llm_state())

    schema_cache: dict[str, Any] = {}

    @app.get("/openapi.json", include_in_schema=False, response_model=None)
    async def openapi() -> JSONResponse:
        if "schema" not in schema_cache:
            base = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema_cache["schema"] = merge_openapi(base, comps)
        return JSONResponse(schema_cache["schema"])

    static_dir = swagger_ui_dir()
    if static_dir is not None:
        from starlette.staticfiles import StaticFiles

        app.mount(_STATIC, StaticFiles(directory=static_dir), name="swagger-ui")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False, response_model=None)
    async def docs() -> HTMLResponse:
        if static_dir is None:
            return HTMLResponse(fallback_docs_html(f"{app.title} - API docs"))
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{_STATIC}/favicon-32x32.png",
        )

    for comp in comps:
        if comp.available and comp.mount:
            app.add_route(comp.mount, _redirect_to(comp.mount + "/"), include_in_schema=False)
            app.mount(comp.mount, comp.app, name=comp.name)
    # Serving last, at the root: everything not matched above falls through to it.
    for comp in comps:
        if comp.available and not comp.mount:
            app.mount("", comp.app, name=comp.name)
    return app
