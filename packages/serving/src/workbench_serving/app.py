"""``create_app``: the serving FastAPI app (native API, OpenAI-compatible API, WebSocket, metrics).

Models load in the background at startup (the lifespan), each in the worker thread that owns its
device, so the server answers ``healthz`` at once and ``readyz`` turns 200 when all are loaded.
The app never assumes it owns ``/``: the dev server mounts it at the root next to other apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from workbench_serving.api import native, openai_compat, training, ws
from workbench_serving.api.errors import install_error_handlers
from workbench_serving.api.middleware import (
    BodyLimitMiddleware,
    RequestIdLogFilter,
    RequestIdMiddleware,
)
from workbench_serving.api.state import ServedModel, ServingState, parse_spec
from workbench_serving.auth import APIKeyMiddleware
from workbench_serving.idempotency import IdempotencyMiddleware
from workbench_serving.settings import ServingSettings, check_bind_is_safe

log = logging.getLogger("workbench_serving")


def _kind_of(spec: str) -> tuple[str, str]:
    kind, name = parse_spec(spec)
    if kind is not None:
        return kind, name
    from workbench_serving import presets

    if presets.is_preset(name):
        return presets.PRESET_KINDS[name], name
    return "text", name


def build_engine(kind: str, name: str, device: str, dtype: str) -> Any:
    """Construct (not load) the engine for one served model."""
    dev = None if device == "auto" else device
    dt = None if dtype == "auto" else dtype
    if kind == "text":
        from workbench_serving.engines.text import TextEngine

        return TextEngine(name, device=dev, dtype=dt)
    if kind == "image":
        from workbench_serving.engines.image import ImageEngine

        return ImageEngine(name, device=dev, dtype=dt)
    if kind == "vision":
        from workbench_serving.engines.vision import VisionEngine

        return VisionEngine(name, device=dev, dtype=dt)
    raise ValueError(f"unknown model kind {kind!r} for {name!r}")


def build_training_engine(name: str, device: str, dtype: str, text_engine: Any = None) -> Any:
    """The LoRA training engine; shares the served text engine's base weights when given."""
    from workbench_serving.engines.training import TrainingEngine

    dev = None if device == "auto" else device
    dt = None if dtype == "auto" else dtype
    return TrainingEngine(name, device=dev, dtype=dt, text_engine=text_engine)


def _device_of(engine: Any, fallback: str) -> str:
    """The device an engine will run on, without loading it (its ``device`` may load)."""
    from workbench_serving.engines._device import resolve_device

    arg = getattr(engine, "_device_arg", None)
    return str(resolve_device(arg or fallback))


# transformers' lazy module imports are not safe when two threads import the same model class at
# once (seen as "cannot import name AutoModelForCausalLM"); two apps in one process (tests, the
# dev server) would do exactly that, so loads are serialised process-wide.
_LOAD_LOCK = threading.Lock()


def _locked_load(engine: Any) -> None:
    with _LOAD_LOCK:
        engine.load()


async def _load_all(st: ServingState) -> None:
    """Load every engine in its device thread, one after another."""
    served = [*st.models.values(), *([st.training] if st.training is not None else [])]
    for m in served:
        try:
            await m.scheduler.worker.run(_locked_load, m.engine)
            m.info = {}
            m.status = "ready"
            log.info("model %s (%s) ready", m.name, m.kind)
        except Exception as exc:
            m.status = "error"
            m.error = f"{type(exc).__name__}: {exc}"
            log.exception("model %s failed to load", m.name)
    if st.training is not None and st.training.status == "ready":
        await _restore_checkpoints(st)
    st.update_gauges()


async def _restore_checkpoints(st: ServingState) -> None:
    """Serve the LoRA checkpoints saved by earlier processes (newest first, bounded)."""
    from workbench_serving.api.state import Adapter
    from workbench_serving.engines.training import read_checkpoint

    assert st.training is not None
    training = st.training
    root = getattr(training.engine, "root", None)
    if root is None or not root.is_dir():
        return
    found = []
    for run_dir in root.iterdir():
        if run_dir.is_dir():
            for ck_dir in run_dir.iterdir():
                info = read_checkpoint(ck_dir) if ck_dir.is_dir() else None
                if info is not None:
                    found.append(info)
    found.sort(key=lambda i: i.created_at, reverse=True)
    text = training.engine.text
    for info in found[: st.settings.max_restored_checkpoints]:
        try:
            await training.scheduler.worker.run(text.load_adapter, info.model_name, info.path)
        except Exception:
            log.warning("could not restore checkpoint %s", info.model_name, exc_info=True)
            continue
        st.adapters[info.model_name] = Adapter(
            model_name=info.model_name,
            base_model=training.name,
            run_id=info.run_id,
            checkpoint=info.name,
            path=info.path,
        )


def _register(st: ServingState, engines: list[tuple[str, Any]] | None) -> None:
    s = st.settings
    if engines is not None:
        for kind, engine in engines:
            sched = st.make_scheduler(engine, _device_of(engine, s.device))
            target = ServedModel(engine.name, kind, engine, sched)
            if kind == "training":
                st.training = target
            else:
                st.models[engine.name] = target
        return
    for spec in s.models:
        kind, name = _kind_of(spec)
        engine = build_engine(kind, name, s.device, s.dtype)
        sched = st.make_scheduler(engine, _device_of(engine, s.device))
        st.models[engine.name] = ServedModel(engine.name, kind, engine, sched)
    for name in s.training_models[:1]:
        host = st.models.get(name)
        text_engine = host.engine if host is not None and host.kind == "text" else None
        engine = build_training_engine(name, s.device, s.dtype, text_engine)
        sched = st.make_scheduler(engine, _device_of(engine, s.device))
        st.training = ServedModel(name, "training", engine, sched)


def create_app(
    settings: ServingSettings | None = None,
    *,
    engines: list[tuple[str, Any]] | None = None,
) -> FastAPI:
    """Build the serving app.

    Args:
        settings: what to serve and the limits; read from ``WORKBENCH_*`` when omitted.
        engines: ``(kind, engine)`` pairs to serve instead of building them from settings
            (embedding an already-constructed engine, or testing the server with a small one).

    Raises:
        InsecureBindError: ``settings.host`` is not loopback and no API keys are configured.
    """
    settings = settings or ServingSettings()
    check_bind_is_safe(settings)
    st = ServingState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st.started_at = time.time()
        st.closing = False
        if not st.models and st.training is None:
            _register(st, engines)
        for sched in st.all_schedulers():
            sched.start()
        st.load_task = asyncio.create_task(_load_all(st), name="workbench-load-models")
        try:
            yield
        finally:
            st.closing = True
            if st.load_task is not None and not st.load_task.done():
                st.load_task.cancel()
                await asyncio.gather(st.load_task, return_exceptions=True)
            await asyncio.gather(
                *(s.close(settings.shutdown_grace_s) for s in st.all_schedulers()),
                return_exceptions=True,
            )
            await st.futures.close()
            for worker in st.workers.values():
                await asyncio.to_thread(worker.shutdown)
            st.workers.clear()
            st.models.clear()
            st.training = None

    app = FastAPI(
        title="Workbench serving",
        version="0.1.0",
        description="Native Tinker-style API (/api/v1) and an OpenAI-compatible API (/v1).",
        lifespan=lifespan,
    )
    app.state.serving = st
    app.state.metrics = st.metrics
    install_error_handlers(app)
    app.include_router(native.router)
    app.include_router(training.router)
    app.include_router(openai_compat.router)
    app.include_router(ws.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        st.update_gauges()
        return Response(st.metrics.render(), media_type=st.metrics.content_type)

    # Added innermost first: Idempotency runs inside BodyLimit (it needs the buffered body),
    # which runs inside Auth (no body is read for an unauthenticated caller).
    app.add_middleware(
        IdempotencyMiddleware, store=st.idempotency, wait_timeout_s=settings.request_timeout_s
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(APIKeyMiddleware, keys=list(settings.api_keys))
    app.add_middleware(RequestIdMiddleware, metrics=st.metrics)

    logging.getLogger("workbench_serving").addFilter(RequestIdLogFilter())
    return app
