"""One error shape for every failure, and the handlers that produce it.

Error tree (status -> ``type``)::

    APIError
     ├── 400 invalid_request_error   bad field (``param`` names it); /v1 validation errors
     ├── 401 authentication_error    missing or unknown API key
     ├── 404 not_found_error         unknown model, run, checkpoint, future, route
     ├── 409 conflict_error          Idempotency-Key reused with a different body
     ├── 413 request_too_large       body over ``max_request_bytes``
     ├── 422 invalid_request_error   native API validation errors (``param`` names the field)
     ├── 429 rate_limit_error        model queue full (``Retry-After``)
     ├── 499 cancelled               the client went away
     ├── 503 unavailable             models still loading / shutting down
     ├── 504 timeout_error           the request's deadline passed
     └── 500 internal_error          a bug; logged with the request id, no traceback on the wire

The native API (``/api/v1``) answers ``{"error": {"type", "message", "request_id", "param"}}``;
the OpenAI-compatible API (``/v1``) the same plus ``code``, which is OpenAI's shape, so the
official ``openai`` package raises its own error classes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench_serving.engines.base import EngineError
from workbench_serving.scheduler import (
    DeadlineExceeded,
    QueueFull,
    RequestCancelled,
    SchedulerClosed,
    SchedulerError,
)

log = logging.getLogger("workbench_serving.errors")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "cancelled",
    503: "unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    """An error the server means to return: status, type, message, the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        type: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type or _TYPES.get(status, "internal_error" if status >= 500 else "error")
        self.code = code
        self.headers = headers or {}


def not_found(what: str, name: str, param: str | None = None) -> APIError:
    return APIError(404, f"{what} {name!r} not found", param=param, code=f"{what}_not_found")


def request_id_of(request: Request) -> str | None:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else None


def error_payload(
    request_id: str | None,
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {
        "error": {
            "type": type or _TYPES.get(status, "internal_error"),
            "message": message,
            "request_id": request_id,
            "param": param,
            "code": code,
        }
    }


def error_response(request: Request, err: APIError) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(err.type, str(err.status)).inc()
    rid = request_id_of(request)
    log.info("request %s -> %s %s: %s", rid, err.status, err.type, err.message)
    headers = dict(err.headers)
    return JSONResponse(
        error_payload(rid, err.status, err.message, type=err.type, param=err.param, code=err.code),
        status_code=err.status,
        headers=headers,
    )


def to_api_error(exc: BaseException) -> APIError:
    """Map scheduler and engine exceptions to what the client sees."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, QueueFull):
        return APIError(429, str(exc), headers={"Retry-After": str(int(exc.retry_after))})
    if isinstance(exc, DeadlineExceeded):
        return APIError(504, f"request deadline exceeded: {exc}")
    if isinstance(exc, RequestCancelled):
        return APIError(499, f"request cancelled: {exc}")
    if isinstance(exc, SchedulerClosed):
        return APIError(503, str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, EngineError):
        return APIError(exc.status, exc.message, param=exc.param)
    log.error("unhandled error", exc_info=exc)
    return APIError(500, f"internal error ({type(exc).__name__}); see the server log")


def _loc_to_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # Drop pydantic's union-branch tags (e.g. "str", "list[ChatMessage]", "ModelInput").
    cleaned = [p for p in parts if not (p[:1].isupper() or "[" in p or p in ("str", "int"))]
    return ".".join(cleaned) if cleaned else ("body" if loc and loc[0] == "body" else None)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
    if not errors:
        errors = [{"loc": ("body",), "msg": "invalid request"}]
    # Within a union, the deepest location is the branch the client meant (a ModelInput with a
    # bad token, not "should be a string").
    first = max(
        errors, key=lambda e: len((_loc_to_param(tuple(e.get("loc", ()))) or "").split("."))
    )
    param = _loc_to_param(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        param = "body"
        msg = f"body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    else:
        msg = f"{param or 'body'}: {first.get('msg')}"
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more)"
    status = 400 if request.url.path.startswith("/v1") else 422
    return error_response(request, APIError(status, msg, param=param, code="invalid_value"))


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, to_api_error(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(
            request,
            APIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})),
        )

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation_error(request, exc)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(EngineError, api_error)
    app.add_exception_handler(SchedulerError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation)
