"""The agent's HTTP API and chat page, as one FastAPI app (mounted at ``/agent`` by the dev server).

Routes (all relative, nothing assumes the app is at the root):

    GET  /                                  chat page (EventSource, relative URLs)
    GET  /healthz, /readyz
    POST /sessions                          {system?}               -> 201 session
    GET  /sessions/{id}                                             -> session with history
    POST /sessions/{id}/runs                {prompt, max_steps?}    -> 202 run
    GET  /sessions/{id}/runs/{run_id}                               -> run status and result
    GET  /sessions/{id}/events              SSE; Last-Event-ID replays what was missed
    POST /sessions/{id}/cancel              {reason?}               -> the cancelled run
    GET  /tools                                                     -> tool schemas
    POST /sessions/{id}/tools/{name}        {args}                  -> tool result

Every error body is ``{"error": {"type", "message", "request_id", "param"}}``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench_core.events import Subscription
from workbench_core.sse import encode_event, sse_stream

from ._builtin import WorkbenchTools
from ._messages import LLMClient
from ._runtime import AgentRuntime, AgentSettings, RunConflict, SessionNotFound
from ._tools import ToolArgumentsInvalid, ToolNotFound, ToolRegistry

__all__ = ["create_app"]


class APIError(Exception):
    """An error with an HTTP status, rendered in the common error body."""

    def __init__(self, status: int, type: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.param = status, type, message, param


class CreateSessionBody(BaseModel):
    system: str | None = Field(default=None, max_length=32_000)


class StartRunBody(BaseModel):
    prompt: str = Field(min_length=1)
    max_steps: int | None = Field(default=None, ge=1)


class CancelBody(BaseModel):
    reason: str = Field(default="cancelled by user", min_length=1, max_length=500)


class ToolCallBody(BaseModel):
    args: dict[str, Any] = Field(default_factory=dict)


def _error(status: int, type: str, message: str, request_id: str, param: str | None) -> Response:
    body: dict[str, Any] = {"type": type, "message": message, "request_id": request_id}
    if param is not None:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status, headers={"X-Request-ID": request_id})


def _request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else "req_" + uuid.uuid4().hex[:16]


def _param_of(loc: Any) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


class _Coalesced:
    """Events as SSE bytes, one chunk per burst: every event already buffered when the client is
    ready goes out in one write. A token stream publishes faster than one HTTP chunk per event
    can be sent; coalescing keeps the wire up with it. Heartbeats and closing stay with core's
    ``sse_stream``.
    """

    def __init__(self, subscription: Subscription) -> None:
        self._sub = subscription

    def __aiter__(self) -> _Coalesced:
        return self

    async def __anext__(self) -> bytes:
        first = await self._sub.next()  # StopAsyncIteration when the topic closes
        if first is None:  # pragma: no cover - no timeout given, so never None
            return b""
        return b"".join([encode_event(first), *map(encode_event, self._sub.drain())])

    async def aclose(self) -> None:
        await self._sub.aclose()


def create_app(
    runtime: AgentRuntime | None = None,
    *,
    llm: LLMClient | None = None,
    registry: ToolRegistry | None = None,
    base_url: str | None = None,
    model: str | None = None,
    tracker_url: str | None = None,
    settings: AgentSettings | None = None,
) -> FastAPI:
    """Build the agent app.

    Args:
        runtime: a ready runtime (tests); otherwise one is built from the other arguments.
        llm: the model; default: the workbench's served model at ``base_url`` (``ServedLLM``).
        registry: the tools; default: the built-in workbench tools against ``base_url`` and the
            tracker.
        base_url: the workbench server the default LLM and tools call (``WORKBENCH_BASE_URL``).
        model: the served model name for the default LLM.
        tracker_url: accepted for the dev server's composition; the tools read the tracker's
            store directly (``WORKBENCH_HOME``).
        settings: limits; default from ``WORKBENCH_AGENT_*``.
    """
    del tracker_url
    builtin: WorkbenchTools | None = None
    settings = settings or (runtime.settings if runtime is not None else AgentSettings())
    if runtime is None:
        if llm is None:
            from ._served import ServedLLM

            llm = ServedLLM(base_url=base_url, model=model or settings.model)
        if registry is None:
            builtin = WorkbenchTools(base_url)
            registry = ToolRegistry(builtin.specs())
        from ._tracking import tracker_observer

        runtime = AgentRuntime(llm, registry, settings=settings, observer=tracker_observer())
    rt = runtime

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await rt.aclose()
        if builtin is not None:
            await builtin.aclose()

    app = FastAPI(title="Workbench agent", version="0.1.0", lifespan=lifespan)
    app.state.runtime = rt

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Response:
        rid = request.headers.get("x-request-id") or "req_" + uuid.uuid4().hex[:16]
        request.state.request_id = rid
        response: Response = await call_next(request)
        response.headers.setdefault("X-Request-ID", rid)
        return response

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return _error(exc.status, exc.type, exc.message, _request_id(request), exc.param)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        param = _param_of(first.get("loc", ()))
        message = "; ".join(f"{_param_of(e.get('loc', ()))}: {e.get('msg')}" for e in errors)
        return _error(422, "invalid_request", message, _request_id(request), param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, "http_error", str(exc.detail), _request_id(request), None)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return _error(
            500, "internal_error", f"{type(exc).__name__}: {exc}", _request_id(request), None
        )

    def session_or_404(session_id: str) -> Any:
        try:
            return rt.get_session(session_id)
        except SessionNotFound:
            raise APIError(404, "not_found", f"no session {session_id!r}", "session_id") from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        page = resources.files("workbench_agent").joinpath("static/chat.html").read_text("utf-8")
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        return {"status": "ready", "tools": len(rt.registry), "llm": type(rt.llm).__name__}

    @app.post("/sessions", status_code=201)
    async def create_session(body: CreateSessionBody | None = None) -> dict[str, Any]:
        session = rt.create_session(system=body.system if body else None)
        return session.to_dict()

    @app.get("/sessions")
    async def list_sessions() -> dict[str, Any]:
        return {
            "sessions": [
                {"id": s.id, "created_at": s.created_at, "runs": len(s.runs)} for s in rt.sessions()
            ]
        }

    @app.get("/sessions/{session_id}")
    async def get_session(session_id: str) -> dict[str, Any]:
        return dict(session_or_404(session_id).to_dict())

    @app.post("/sessions/{session_id}/runs", status_code=202)
    async def start_run(session_id: str, body: StartRunBody) -> dict[str, Any]:
        session_or_404(session_id)
        if len(body.prompt) > settings.max_prompt_chars:
            raise APIError(
                422,
                "invalid_request",
                f"prompt is longer than {settings.max_prompt_chars} characters",
                "prompt",
            )
        if body.max_steps is not None and body.max_steps > settings.max_steps_limit:
            raise APIError(
                422,
                "invalid_request",
                f"max_steps must be <= {settings.max_steps_limit}",
                "max_steps",
            )
        try:
            handle = rt.start_run(session_id, body.prompt, max_steps=body.max_steps)
        except RunConflict as exc:
            raise APIError(409, "conflict", str(exc), "session_id") from None
        return handle.to_dict()

    @app.get("/sessions/{session_id}/runs/{run_id}")
    async def get_run(session_id: str, run_id: str) -> dict[str, Any]:
        session = session_or_404(session_id)
        handle = session.runs.get(run_id)
        if handle is None:
            raise APIError(404, "not_found", f"no run {run_id!r} in this session", "run_id")
        return dict(handle.to_dict())

    @app.get("/sessions/{session_id}/events")
    async def events(
        session_id: str,
        last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
        since: int | None = Query(default=None, ge=0),
    ) -> StreamingResponse:
        session = session_or_404(session_id)
        last_seq = since if since is not None else 0
        if last_event_id is not None and last_event_id.strip():
            try:
                last_seq = int(last_event_id)
            except ValueError:
                raise APIError(
                    400,
                    "invalid_request",
                    f"Last-Event-ID must be an event sequence number, got {last_event_id!r}",
                    "Last-Event-ID",
                ) from None
            if last_seq < 0:
                raise APIError(
                    400, "invalid_request", "Last-Event-ID must be >= 0", "Last-Event-ID"
                )
        subscription = rt.bus.subscribe(session.topic, last_seq=last_seq)
        return StreamingResponse(
            sse_stream(_Coalesced(subscription), heartbeat=settings.heartbeat),
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/sessions/{session_id}/cancel")
    async def cancel(session_id: str, body: CancelBody | None = None) -> dict[str, Any]:
        session_or_404(session_id)
        reason = body.reason if body else "cancelled by user"
        handle = rt.cancel(session_id, reason)
        if handle is None:
            return {"cancelled": False, "run": None}
        return {"cancelled": True, "reason": reason, "run": handle.to_dict()}

    @app.get("/tools")
    async def list_tools() -> dict[str, Any]:
        return {
            "tools": [
                {**t.schema().model_dump(), "timeout": t.timeout, "is_async": t.is_async}
                for t in rt.registry.list()
            ]
        }

    @app.post("/sessions/{session_id}/tools/{name}")
    async def call_tool(session_id: str, name: str, body: ToolCallBody) -> dict[str, Any]:
        session_or_404(session_id)
        try:
            spec = rt.registry.get(name)
        except ToolNotFound as exc:
            raise APIError(404, "not_found", str(exc), "name") from None
        try:
            spec.validate_args(body.args)
        except ToolArgumentsInvalid as exc:
            raise APIError(422, "invalid_request", str(exc), "args") from None
        result = await rt.call_tool(session_id, name, body.args)
        return result.to_dict()

    return app
