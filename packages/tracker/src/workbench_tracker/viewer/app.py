"""The tracker viewer: REST under ``/api``, live WebSocket, ingest for the HTTP store, web UI.

``create_app(store)`` returns a FastAPI app that works at the root of a server or mounted under
any prefix (the dev server mounts it at ``/tracker``): the UI uses relative URLs only.

Every error is ``{"error": {"type", "message", "request_id", "param"}}``; bad input is a 4xx whose
``param`` names the field; an unexpected failure is a 500 with a message, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.websockets import WebSocketDisconnect

from workbench_tracker._validate import MAX_KEY_LENGTH
from workbench_tracker.downsample import METHODS
from workbench_tracker.store.base import (
    RUN_STATUSES,
    RunInfo,
    RunNotFoundError,
    Series,
    Store,
    StoreBusyError,
    decode_float,
    encode_float,
)

__all__ = ["STATIC_DIR", "ApiError", "create_app"]

STATIC_DIR = Path(str(resources.files("workbench_tracker") / "static"))
MAX_INGEST_ROWS = 200_000
MAX_POINTS = 100_000
MAX_MEDIA_BYTES = 20 * 1024 * 1024


class ApiError(Exception):
    """An error with an HTTP status and the parameter at fault."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, type: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type or {
            400: "invalid_request",
            404: "not_found",
            409: "conflict",
            422: "invalid_request",
            503: "unavailable",
        }.get(status, "error")


def _error(status: int, type_: str, message: str, param: str | None, request: Any) -> JSONResponse:
    rid = getattr(getattr(request, "state", None), "request_id", None) or uuid.uuid4().hex
    body: dict[str, Any] = {"type": type_, "message": message, "request_id": rid}
    if param is not None:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status, headers={"X-Request-ID": rid})


# -- request bodies ---------------------------------------------------------------------------
class RunCreate(BaseModel):
    """Body of ``POST /api/ingest/runs``."""

    id: str = Field(min_length=1, max_length=64)
    project: str = Field(min_length=1, max_length=200)
    name: str = Field(default="", max_length=200)
    status: str = "running"
    config: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    notes: str = ""
    environment: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None

    @field_validator("status")
    @classmethod
    def _status(cls, v: str) -> str:
        if v not in RUN_STATUSES:
            raise ValueError(f"must be one of {', '.join(RUN_STATUSES)}")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not t or len(t) > 128:
                raise ValueError("each tag must be 1..128 characters")
        return v


class RunPatch(BaseModel):
    """Body of ``PATCH /api/ingest/runs/{id}``: only the fields to change."""

    model_config = {"extra": "forbid"}
    name: str | None = Field(default=None, max_length=200)
    status: str | None = None
    finished_at: str | None = None
    config: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    tags: list[str] | None = None
    notes: str | None = None
    environment: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None

    @field_validator("status")
    @classmethod
    def _status(cls, v: str | None) -> str | None:
        if v is not None and v not in RUN_STATUSES:
            raise ValueError(f"must be one of {', '.join(RUN_STATUSES)}")
        return v


class MetricsIngest(BaseModel):
    """Body of ``POST /api/ingest/runs/{id}/metrics``: ``[key, step, value, wall_time]`` rows
    (value may be the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``)."""

    rows: list[tuple[str, int, float | str | None, float]] = Field(max_length=MAX_INGEST_ROWS)


class MediaIngest(BaseModel):
    """Body of ``POST /api/ingest/runs/{id}/media``."""

    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    step: int = Field(ge=0)
    mime: str = Field(default="image/png", pattern=r"^image/(png|jpeg|gif|webp)$")
    caption: str = ""
    width: int | None = None
    height: int | None = None
    data_b64: str


class AlertIngest(BaseModel):
    """Body of ``POST /api/ingest/runs/{id}/alerts``."""

    kind: str = Field(min_length=1, max_length=64)
    message: str = Field(default="", max_length=10_000)
    key: str = Field(default="", max_length=MAX_KEY_LENGTH)
    step: int | None = None
    value: float | str | None = None


def _parse_query_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _series_json(series: Series, total: int | None = None) -> dict[str, Any]:
    out = series.to_dict()
    if total is not None:
        out["total"] = total
    return out


def create_app(store: Store | str | None = None, *, poll_interval: float = 0.5) -> FastAPI:
    """The viewer app.

    Args:
        store: a Store or URL; default ``get_store()``. Available to routers as
            ``request.app.state.store``.
        poll_interval: how often the live WebSocket checks the store for new points (seconds).
    """
    from workbench_tracker.store import get_store
    from workbench_tracker.viewer.workspace import router as workspace_router
    from workbench_tracker.viewer.workspace import search_runs

    st: Store = store if isinstance(store, Store) else get_store(store)
    app = FastAPI(
        title="Workbench tracker",
        version="0.1.0",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
    )
    app.state.store = st

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
        try:
            response: Response = await call_next(request)
        except Exception as exc:  # last resort: never a traceback on the wire
            return _error(500, "internal_error", f"{type(exc).__name__}: {exc}", None, request)
        response.headers["X-Request-ID"] = rid
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid request")
        return _error(422, "invalid_request", f"{param}: {msg}" if param else msg, param, request)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.type, exc.message, exc.param, request)

    @app.exception_handler(RunNotFoundError)
    async def _not_found(request: Request, exc: RunNotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(exc), "run_id", request)

    @app.exception_handler(StoreBusyError)
    async def _busy(request: Request, exc: StoreBusyError) -> JSONResponse:
        resp = _error(503, "unavailable", str(exc), None, request)
        resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail), None, request)

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        text = str(exc)
        param = text.split(":", 1)[0] if ":" in text and " " not in text.split(":", 1)[0] else None
        return _error(400, "invalid_request", text, param, request)

    api = APIRouter(prefix="/api")

    # -- health -------------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(request: Request) -> Response:
        try:
            st.ping()
        except Exception as exc:
            return _error(503, "unavailable", f"store not ready: {exc}", None, request)
        return JSONResponse({"status": "ready", "store": type(st).__name__})

    # -- reads --------------------------------------------------------------------------------
    @api.get("/projects")
    def projects() -> dict[str, Any]:
        return {"projects": [p.to_dict() for p in st.list_projects()]}

    @api.get("/runs")
    def runs(
        request: Request,
        project: str | None = None,
        tag: list[str] = Query(default=[]),
        status: str | None = None,
        sort: str = "-created_at",
        limit: int = Query(default=100, ge=1, le=1000),
        offset: int = Query(default=0, ge=0),
        search: str | None = Query(
            default=None, max_length=200, description="part of the run's name or id, any case"
        ),
    ) -> dict[str, Any]:
        if status is not None and status not in RUN_STATUSES:
            raise ApiError(422, f"status: must be one of {', '.join(RUN_STATUSES)}", param="status")
        config: dict[str, Any] = {}
        for k, v in request.query_params.multi_items():
            if k.startswith("config."):
                if len(k) == len("config."):
                    raise ApiError(422, "config.: needs a key, e.g. config.lr=0.1", param=k)
                config[k[len("config.") :]] = _parse_query_value(v)
            elif k not in ("project", "tag", "status", "sort", "limit", "offset", "search"):
                raise ApiError(422, f"{k}: unknown query parameter", param=k)
        filters: dict[str, Any] = {
            "project": project,
            "tags": tag,
            "status": status,
            "config": config,
            "sort": sort,
        }
        try:
            if search:
                found, total = search_runs(st, search, limit=limit, offset=offset, **filters)
            else:
                found, total = st.list_runs(**filters, limit=limit, offset=offset)
        except ValueError as exc:
            raise ApiError(422, str(exc), param="sort") from exc
        return {
            "runs": [r.to_dict() for r in found],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @api.get("/runs/{run_id}")
    def run_detail(run_id: str) -> dict[str, Any]:
        return st.get_run(run_id).to_dict()

    @api.delete("/runs/{run_id}")
    def run_delete(run_id: str) -> dict[str, Any]:
        st.delete_run(run_id)
        return {"deleted": run_id}

    @api.get("/runs/{run_id}/metrics")
    def run_metric_keys(run_id: str) -> dict[str, Any]:
        st.get_run(run_id)
        keys = st.metric_keys(run_id)
        return {
            "keys": {k: {**v, "last_value": encode_float(v["last_value"])} for k, v in keys.items()}
        }

    @api.get("/runs/{run_id}/series")
    def run_series(
        run_id: str,
        key: str = Query(min_length=1, max_length=MAX_KEY_LENGTH),
        points: int = Query(default=1000, ge=2, le=MAX_POINTS),
        method: str = "lttb",
        min_step: int | None = Query(default=None, ge=0),
        max_step: int | None = Query(default=None, ge=0),
        after_step: int | None = None,
        limit: int | None = Query(default=None, ge=1),
        envelope: bool = False,
        buckets: int | None = Query(default=None, ge=1, le=MAX_POINTS),
    ) -> Response:
        """A metric's points; with ``envelope=true`` also its min/max band over ``buckets``
        buckets (default ``points // 2``) of the same step range, as ``"envelope": {"steps",
        "last_steps", "min", "max", "times", "last_times"}`` (``limit`` does not apply to it)."""
        if method not in (*METHODS, "none"):
            raise ApiError(
                422, f"method: must be one of lttb, minmax, none; got {method!r}", param="method"
            )
        st.get_run(run_id)
        if method == "none" or after_step is not None:
            series = st.metric_series(
                run_id,
                key,
                min_step=min_step,
                max_step=max_step,
                after_step=after_step,
                limit=limit,
            )
            out = _series_json(series)
        else:
            keys = st.metric_keys(run_id)
            total = int(keys[key]["count"]) if key in keys else 0
            series = st.metric_series_downsampled(
                run_id, key, points=points, method=method, min_step=min_step, max_step=max_step
            )
            out = _series_json(series, total)
        if envelope:
            lower = min_step
            if after_step is not None:
                lower = max(after_step + 1, min_step or 0)
            out["envelope"] = st.metric_envelope(
                run_id,
                key,
                buckets=buckets or max(1, points // 2),
                min_step=lower,
                max_step=max_step,
            ).to_dict()
        return JSONResponse(out)

    @api.get("/compare")
    def compare(
        runs: str = Query(min_length=1, description="comma-separated run ids"),
        keys: str | None = None,
        points: int = Query(default=500, ge=2, le=MAX_POINTS),
    ) -> dict[str, Any]:
        ids = [r for r in runs.split(",") if r]
        if not ids or len(ids) > 20:
            raise ApiError(422, "runs: give 1..20 comma-separated run ids", param="runs")
        infos = []
        for rid in ids:
            try:
                infos.append(st.get_run(rid))
            except RunNotFoundError as exc:
                raise ApiError(404, f"runs: run {rid!r} not found", param="runs") from exc
        all_keys = sorted({k for i in infos for k in i.config})
        diff = {}
        for k in all_keys:
            values = {i.id: i.config.get(k) for i in infos}
            if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
                diff[k] = values
        wanted = (
            keys.split(",") if keys else sorted({k for i in infos for k in st.metric_keys(i.id)})
        )
        series = {
            i.id: {
                k: st.metric_series_downsampled(i.id, k, points=points).to_dict() for k in wanted
            }
            for i in infos
        }
        return {"runs": [i.to_dict() for i in infos], "config_diff": diff, "series": series}

    @api.get("/runs/{run_id}/media")
    def run_media(run_id: str, key: str | None = None) -> dict[str, Any]:
        st.get_run(run_id)
        return {"media": [m.to_dict() for m in st.list_media(run_id, key)]}

    @api.get("/media/{media_id}/info")
    def media_info(media_id: int) -> dict[str, Any]:
        try:
            info, _ = st.get_media(media_id)
        except KeyError as exc:
            raise ApiError(404, f"media_id: {media_id} not found", param="media_id") from exc
        return info.to_dict()

    @api.get("/media/{media_id}")
    def media_bytes(media_id: int) -> Response:
        try:
            info, data = st.get_media(media_id)
        except KeyError as exc:
            raise ApiError(404, f"media_id: {media_id} not found", param="media_id") from exc
        return Response(data, media_type=info.mime, headers={"Cache-Control": "max-age=86400"})

    @api.get("/runs/{run_id}/alerts")
    def run_alerts(
        run_id: str, limit: int = Query(default=1000, ge=1, le=10_000)
    ) -> dict[str, Any]:
        st.get_run(run_id)
        return {"alerts": [a.to_dict() for a in st.list_alerts(run_id, limit=limit)]}

    @api.get("/alerts")
    def alerts(
        project: str | None = None, limit: int = Query(default=1000, ge=1, le=10_000)
    ) -> dict[str, Any]:
        return {"alerts": [a.to_dict() for a in st.list_alerts(project=project, limit=limit)]}

    # -- ingest (the HTTP store's write path) ------------------------------------------------
    @api.post("/ingest/runs", status_code=201)
    def ingest_run(body: RunCreate) -> dict[str, Any]:
        info = RunInfo(**{**body.model_dump(), "name": body.name or body.id})
        try:
            return st.create_run(info).to_dict()
        except ValueError as exc:
            raise ApiError(409, str(exc), param="id") from exc

    @api.patch("/ingest/runs/{run_id}")
    def ingest_patch(run_id: str, body: RunPatch) -> dict[str, Any]:
        fields = body.model_dump(exclude_unset=True)
        if "finished_at" in fields and fields["finished_at"] is not None:
            from datetime import datetime

            try:
                fields["finished_at"] = datetime.fromisoformat(fields["finished_at"])
            except ValueError as exc:
                raise ApiError(
                    422, "finished_at: not an ISO datetime", param="finished_at"
                ) from exc
        return st.update_run(run_id, **fields).to_dict()

    @api.post("/ingest/runs/{run_id}/metrics")
    def ingest_metrics(run_id: str, body: MetricsIngest) -> dict[str, Any]:
        st.get_run(run_id)
        rows = []
        for i, (key, step, value, wall) in enumerate(body.rows):
            if not key or len(key) > MAX_KEY_LENGTH:
                raise ApiError(
                    422, f"rows.{i}.key: length must be 1..{MAX_KEY_LENGTH}", param=f"rows.{i}.key"
                )
            if step < 0:
                raise ApiError(422, f"rows.{i}.step: must be >= 0", param=f"rows.{i}.step")
            if isinstance(value, str) and value not in ("NaN", "Infinity", "-Infinity"):
                raise ApiError(422, f"rows.{i}.value: must be a number", param=f"rows.{i}.value")
            rows.append((key, step, decode_float(value), wall))
        st.log_metrics(run_id, rows)
        return {"written": len(rows)}

    @api.post("/ingest/runs/{run_id}/media", status_code=201)
    def ingest_media(run_id: str, body: MediaIngest) -> dict[str, Any]:
        try:
            data = base64.b64decode(body.data_b64, validate=True)
        except ValueError as exc:
            raise ApiError(422, "data_b64: not valid base64", param="data_b64") from exc
        if len(data) > MAX_MEDIA_BYTES:
            raise ApiError(413, "data_b64: image larger than 20 MiB", param="data_b64")
        info = st.add_media(
            run_id,
            body.key,
            body.step,
            data,
            mime=body.mime,
            caption=body.caption,
            width=body.width,
            height=body.height,
        )
        return info.to_dict()

    @api.post("/ingest/runs/{run_id}/alerts", status_code=201)
    def ingest_alert(run_id: str, body: AlertIngest) -> dict[str, Any]:
        st.get_run(run_id)
        value = body.value
        if isinstance(value, str) and value not in ("NaN", "Infinity", "-Infinity"):
            raise ApiError(422, "value: must be a number", param="value")
        fv = None if value is None else decode_float(value)
        return st.add_alert(
            run_id, body.kind, body.message, key=body.key, step=body.step, value=fv
        ).to_dict()

    # -- live ---------------------------------------------------------------------------------
    @api.websocket("/runs/{run_id}/ws")
    async def live(ws: WebSocket, run_id: str) -> None:
        """Pushes ``{"type": "points", "key", "steps", "values"}`` as points arrive, and
        ``{"type": "status", "status"}`` when the run's status changes.

        The client may send ``{"after": {key: last_step_it_has}}`` at any time to (re)set where
        each key resumes; by default everything is sent from the first point (downsampled to
        ``points`` for the initial backlog is the client's job via ``/series``; this socket
        sends raw new points).
        """
        await ws.accept()
        try:
            info = await asyncio.to_thread(st.get_run, run_id)
        except RunNotFoundError:
            await ws.send_json({"type": "error", "message": f"run {run_id!r} not found"})
            await ws.close(code=4404)
            return
        after: dict[str, int] = {}
        status = info.status
        await ws.send_json({"type": "status", "status": status})
        follow_all = True
        first_message = asyncio.Event()

        async def receive() -> None:
            nonlocal follow_all
            while True:
                msg = await ws.receive_json()
                if isinstance(msg, dict) and isinstance(msg.get("after"), dict):
                    for k, v in msg["after"].items():
                        if isinstance(k, str) and isinstance(v, int):
                            after[k] = v
                    follow_all = bool(msg.get("all", True))
                first_message.set()

        reader = asyncio.create_task(receive())
        # Give the client a moment to say where it resumes before the first push.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_message.wait(), 0.5)
        try:
            while not reader.done():
                keys = await asyncio.to_thread(st.metric_keys, run_id)
                for key, meta in keys.items():
                    if not follow_all and key not in after:
                        continue
                    last = after.get(key, -1)
                    if meta["last_step"] <= last:
                        continue
                    series = await asyncio.to_thread(
                        st.metric_series, run_id, key, after_step=last, limit=50_000
                    )
                    if len(series):
                        after[key] = series.steps[-1]
                        await ws.send_json(
                            {
                                "type": "points",
                                "key": key,
                                "steps": series.steps,
                                "values": [encode_float(v) for v in series.values],
                                "times": series.times,
                            }
                        )
                cur = await asyncio.to_thread(st.get_run, run_id)
                if cur.status != status:
                    status = cur.status
                    await ws.send_json({"type": "status", "status": status})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), poll_interval)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    app.include_router(api)
    app.include_router(workspace_router)

    try:  # the extras (artifacts, lineage, export, monitors, remote) add their routes
        from workbench_tracker.extras_api import router as extras_router  # type: ignore[import-not-found]

        app.include_router(extras_router)
    except ImportError:
        pass

    # -- UI -----------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        path = request.scope.get("path", "/")
        root = request.scope.get("root_path", "")
        if root and not path.endswith("/") and not str(request.url.path).endswith("/"):
            return RedirectResponse(str(request.url.path) + "/")
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        try:
            path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
        except ModuleNotFoundError as exc:
            raise ApiError(404, "plotly is not installed (pip install plotly)") from exc
        return FileResponse(
            path, media_type="application/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        return _serve_static(name)

    @app.get("/{name}.html", include_in_schema=False)
    def page(name: str) -> Response:
        return _serve_static(f"{name}.html")

    return app


_TYPES = {
    ".html": "text/html",
    ".js": "application/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


def _serve_static(name: str) -> Response:
    if "/" in name or "\\" in name or name.startswith("."):
        raise ApiError(404, f"name: {name!r} not found", param="name")
    path = STATIC_DIR / name
    if not path.is_file():
        raise ApiError(404, f"name: {name!r} not found", param="name")
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"))
