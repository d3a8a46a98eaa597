"""The parts the dev server composes, loaded defensively.

Each part (serving, tracker, agent) is built by its own package's ``create_app``. A part whose
package is not installed, or whose factory raises, becomes a :class:`Component` with an ``error``
instead of crashing the whole server: the landing page shows it as "not installed" or "failed",
and the rest keeps working.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._settings import DevServerSettings

__all__ = ["Component", "build_components", "probe", "run_lifespans"]

log = logging.getLogger("workbench.devserver")


@dataclass
class Component:
    """One composed part.

    Attributes:
        name: short id (``serving``, ``tracker``, ``agent``).
        title: what the landing page calls it.
        mount: where it is mounted ("" is the root fallback mount).
        links: (label, path) pairs for the landing page.
        ready_paths: paths inside the sub-app that answer 200 once it is ready (first found wins).
        app: the ASGI app, None when not available.
        error: why it is not available.
        installed: False when its package could not be imported.
    """

    name: str
    title: str
    mount: str
    links: list[tuple[str, str]]
    ready_paths: tuple[str, ...]
    app: Any = None
    error: str | None = None
    installed: bool = True
    started: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    llm: Any = None

    @property
    def available(self) -> bool:
        return self.app is not None and self.error is None


def _call_factory(factory: Callable[..., Any], candidates: Mapping[str, Any]) -> Any:
    """Call ``factory`` with the candidate keyword arguments its signature accepts.

    The packages composed here evolve in parallel; passing only what a factory declares keeps the
    composition working while their signatures settle, without guessing positional order.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = dict(candidates)
    else:
        kwargs = {k: v for k, v in candidates.items() if k in params}
    return factory(**kwargs)


def _import_factory(specs: list[tuple[str, str]]) -> tuple[Callable[..., Any] | None, str | None]:
    """First importable ``module:attr`` among ``specs``; else (None, why)."""
    errors: list[str] = []
    for module_name, attr in specs:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        factory = getattr(module, attr, None)
        if callable(factory):
            return factory, None
        errors.append(f"{module_name} has no {attr}")
    return None, "; ".join(errors)


def _build(
    comp: Component, specs: list[tuple[str, str]], candidates: Mapping[str, Any]
) -> Component:
    factory, why = _import_factory(specs)
    if factory is None:
        comp.installed = False
        comp.error = f"not installed ({why})"
        return comp
    try:
        comp.app = _call_factory(factory, candidates)
    except Exception as exc:
        log.error("building %s failed:\n%s", comp.name, traceback.format_exc())
        comp.error = f"failed to start: {type(exc).__name__}: {exc}"
    return comp


def _first_attr(specs: list[tuple[str, str]]) -> Any:
    for module_name, attr in specs:
        try:
            found = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def _agent_llm(settings: DevServerSettings) -> tuple[Any, str]:
    """The agent's LLM: Gemini with a key, else the workbench's own served model.

    Either way it is wrapped in a :class:`SwitchableLLM` so the demo can move the agent onto a
    fine-tuned checkpoint at run time. Returns (llm or None to let the agent pick, description).
    """
    from ._agent_llm import SwitchableLLM

    if settings.gemini_api_key:
        gemini = _first_attr(
            [
                ("workbench_agent", "GeminiLLM"),
                ("workbench_agent._gemini", "GeminiLLM"),
                ("workbench_agent.llm", "GeminiLLM"),
            ]
        )
        if gemini is not None:
            try:
                desc = f"Gemini ({settings.gemini_model})"
                inner = _call_factory(
                    gemini, {"api_key": settings.gemini_api_key, "model": settings.gemini_model}
                )
                return SwitchableLLM(inner, desc), desc
            except Exception as exc:
                log.warning("Gemini adapter failed (%s); using the served model", exc)
    served = _first_attr(
        [("workbench_agent", "ServedLLM"), ("workbench_agent._served", "ServedLLM")]
    )
    desc = f"served model {settings.agent_model or '(agent default)'} at {settings.base_url}"
    if served is None:
        return None, desc
    try:
        inner = _call_factory(
            served, {"base_url": settings.base_url, "model": settings.agent_model}
        )
    except Exception as exc:
        log.warning("served-model adapter failed (%s); the agent picks its default", exc)
        return None, desc
    return SwitchableLLM(inner, desc), desc


def _serving_settings(settings: DevServerSettings) -> Any:
    """Serving's own settings from the environment, bound where the dev server binds.

    Serving's bind check (no API keys beyond loopback) must judge the address the dev server
    really listens on, not serving's default.
    """
    try:
        from workbench_serving.settings import ServingSettings
    except ImportError:
        return None
    return ServingSettings(host=settings.host, port=settings.port)


def build_components(settings: DevServerSettings, *, tracker_store: Any = None) -> list[Component]:
    """Build every part the settings ask for, in mount order (root fallback last)."""
    comps: list[Component] = []
    if settings.tracker:
        comps.append(
            _build(
                Component(
                    name="tracker",
                    title="Experiment tracker",
                    mount="/tracker",
                    links=[("Runs UI", "/tracker/"), ("REST", "/tracker/api/projects")],
                    ready_paths=("/readyz", "/api/readyz", "/healthz"),
                ),
                [
                    ("workbench_tracker.viewer", "create_app"),
                    ("workbench_tracker", "create_app"),
                    ("workbench_tracker", "create_viewer_app"),
                ],
                {"store": tracker_store},
            )
        )
    if settings.agent:
        llm, llm_desc = _agent_llm(settings)
        comp = Component(
            name="agent",
            title="Agent",
            mount="/agent",
            links=[("Chat", "/agent/"), ("Sessions API", "/agent/sessions")],
            ready_paths=("/readyz", "/healthz"),
            info={"llm": llm_desc},
            llm=llm,
        )
        candidates: dict[str, Any] = {
            "base_url": settings.base_url,
            "serving_url": settings.base_url,
            "tracker_url": settings.base_url + "/tracker",
            "model": settings.agent_model,
        }
        if llm is not None:
            candidates["llm"] = llm
        comps.append(
            _build(
                comp,
                [("workbench_agent.app", "create_app"), ("workbench_agent", "create_app")],
                candidates,
            )
        )
    if settings.serving:
        comps.append(
            _build(
                Component(
                    name="serving",
                    title="Model serving",
                    mount="",
                    links=[
                        ("Capabilities", "/api/v1/capabilities"),
                        ("OpenAI models", "/v1/models"),
                        ("Prometheus metrics", "/metrics"),
                    ],
                    ready_paths=("/api/v1/readyz", "/readyz"),
                ),
                [("workbench_serving.app", "create_app"), ("workbench_serving", "create_app")],
                {"settings": _serving_settings(settings)},
            )
        )
    return comps


@contextlib.asynccontextmanager
async def run_lifespans(components: list[Component]) -> AsyncIterator[dict[str, Any]]:
    """Run each mounted sub-app's lifespan inside the parent's.

    Starlette never runs the lifespan of a mounted app, so without this the serving engines would
    never load and the tracker store never open. A sub-app whose startup fails is marked failed;
    the others still start. The state dicts sub-apps yield are merged and handed to the parent's
    lifespan, so ``request.state`` works inside mounted apps as it does standalone.
    """
    state: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        for comp in components:
            if not comp.available:
                continue
            router = getattr(comp.app, "router", None)
            ctx_factory = getattr(router, "lifespan_context", None)
            if ctx_factory is None:
                comp.started = True
                continue
            try:
                sub_state = await stack.enter_async_context(ctx_factory(comp.app))
            except Exception as exc:
                log.error("%s startup failed:\n%s", comp.name, traceback.format_exc())
                comp.error = f"startup failed: {type(exc).__name__}: {exc}"
                continue
            if isinstance(sub_state, Mapping):
                state.update(sub_state)
            comp.started = True
        yield state


async def probe(comp: Component, timeout: float = 5.0) -> tuple[bool, str]:
    """Ask a component's own readiness endpoint, in process.

    Returns (ready, detail). The component decides what "ready" means (serving: models loaded;
    tracker: store open), so the dev server never duplicates that logic.
    """
    if not comp.available:
        return False, comp.error or "not available"
    if not comp.started:
        return False, "starting"
    import httpx

    transport = httpx.ASGITransport(app=comp.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://devserver.internal", timeout=timeout
    ) as client:
        last = "no readiness endpoint"
        for path in comp.ready_paths:
            try:
                resp = await client.get(path)
            except Exception as exc:
                last = f"{path}: {type(exc).__name__}: {exc}"
                continue
            if resp.status_code == 404:
                continue
            detail = resp.text[:300]
            return resp.status_code == 200, detail
        return False, last
