"""Typed errors raised by the Workbench client.

Every failure a caller can meet is one of these, so ``except WorkbenchError`` catches all of
them and a narrower class catches one kind. The tree::

    WorkbenchError
    ├── APIError                         something went wrong talking to the server
    │   ├── APIConnectionError           no HTTP response (refused, reset, DNS, dropped)
    │   │   └── APITimeoutError          the request ran past its timeout
    │   ├── APIResponseValidationError   a 2xx whose body does not match the protocol type
    │   └── APIStatusError               the server answered 4xx/5xx (status, request_id, message)
    │       ├── BadRequestError              400
    │       ├── AuthenticationError          401
    │       ├── PermissionDeniedError        403
    │       ├── NotFoundError                404
    │       ├── ConflictError                409
    │       ├── UnprocessableEntityError     422
    │       ├── RateLimitError               429
    │       └── InternalServerError          5xx
    ├── ProgressTimeoutError             a batch of concurrent calls made no progress for too long
    └── SyncInAsyncContextError          a blocking call made where it would deadlock

This module imports no HTTP library: the CLI and ``import workbench_client`` stay light, and the
errors can be raised from futures resolved on another thread.
"""

from __future__ import annotations

from typing import Any

from workbench_core.protocol import ErrorDetail


class WorkbenchError(Exception):
    """Base of every error the Workbench client raises."""


class APIError(WorkbenchError):
    """A request to the server failed.

    Attributes:
        message: what went wrong, the server's own words when it answered.
        method: the HTTP method of the failed request.
        url: the URL of the failed request.
        body: the decoded response body, when there was one.
    """

    def __init__(
        self, message: str, *, method: str = "", url: str = "", body: Any | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url
        self.body = body


class APIConnectionError(APIError):
    """No HTTP response came back: connection refused or reset, or the response was dropped."""

    def __init__(
        self, message: str = "Connection error.", *, method: str = "", url: str = ""
    ) -> None:
        super().__init__(message, method=method, url=url)


class APITimeoutError(APIConnectionError):
    """The request ran past its timeout before a response came back."""

    def __init__(
        self, message: str = "Request timed out.", *, method: str = "", url: str = ""
    ) -> None:
        super().__init__(message, method=method, url=url)


class APIResponseValidationError(APIError):
    """The server answered 2xx but the body does not match the expected protocol type."""


class APIStatusError(APIError):
    """The server answered with a 4xx or 5xx status.

    Attributes:
        status_code: the HTTP status.
        request_id: the server's ``X-Request-ID`` (quote it when reporting a problem).
        type: the server's error type (``invalid_request``, ``not_found``, ...).
        param: the request field at fault, when one is.
        retry_after: the server's ``Retry-After`` hint in seconds, when it sent one.
    """

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        type: str | None = None,
        param: str | None = None,
        method: str = "",
        url: str = "",
        body: Any | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, url=url, body=body)
        self.status_code = status_code
        self.request_id = request_id
        self.type = type
        self.param = param
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"Error code: {self.status_code} - {self.message}"]
        if self.param:
            parts.append(f"(param: {self.param})")
        if self.request_id:
            parts.append(f"[request_id: {self.request_id}]")
        return " ".join(parts)


class BadRequestError(APIStatusError):
    """400: the request is malformed; ``param`` names the field."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """401: no API key, or one the server does not know."""

    status_code = 401


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but may not do this."""

    status_code = 403


class NotFoundError(APIStatusError):
    """404: no such model, run, checkpoint or future."""

    status_code = 404


class ConflictError(APIStatusError):
    """409: the request conflicts with the resource's state (retried: it is often transient)."""

    status_code = 409


class UnprocessableEntityError(APIStatusError):
    """422: the body parsed but a value is out of range; ``param`` names the field."""

    status_code = 422


class RateLimitError(APIStatusError):
    """429: the server's queue is full; ``retry_after`` says when to come back."""

    status_code = 429


class InternalServerError(APIStatusError):
    """5xx: the server failed (retried)."""

    status_code = 500


class ProgressTimeoutError(WorkbenchError):
    """A batch of concurrent calls completed nothing for ``progress_timeout`` seconds.

    Raised instead of hanging forever when the server stalls; the caller decides what next.
    """


class SyncInAsyncContextError(WorkbenchError, RuntimeError):
    """A blocking call was made on the client's own event-loop thread, where it would deadlock."""


_STATUS_TO_ERROR: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[APIStatusError]:
    """The error class for an HTTP status (5xx -> InternalServerError, other 4xx -> base)."""
    if status in _STATUS_TO_ERROR:
        return _STATUS_TO_ERROR[status]
    if status >= 500:
        return InternalServerError
    return APIStatusError


def make_status_error(
    status: int,
    body: Any,
    *,
    request_id: str | None = None,
    method: str = "",
    url: str = "",
    retry_after: float | None = None,
    has_api_key: bool = True,
) -> APIStatusError:
    """Build the typed error for a 4xx/5xx answer from its decoded body.

    The body is the server's ``{"error": {...}}`` when it followed the contract; anything else
    (a proxy's HTML page, plain text) still yields an error carrying the status and the text.
    """
    detail: ErrorDetail | None = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        try:
            detail = ErrorDetail.model_validate(body["error"])
        except ValueError:
            detail = None
    if detail is not None:
        message = detail.message
        request_id = detail.request_id or request_id
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    elif body is not None:
        message = str(body)[:500]
    else:
        message = f"HTTP {status}"
    if status == 401 and not has_api_key:
        message = (
            f"{message} - no API key was sent: set WORKBENCH_API_KEY or pass api_key= to the client"
        )
    cls = error_class_for_status(status)
    return cls(
        message,
        status_code=status,
        request_id=request_id,
        type=detail.type if detail else None,
        param=detail.param if detail else None,
        method=method,
        url=url,
        body=body,
        retry_after=retry_after,
    )


def is_retryable(exc: BaseException) -> bool:
    """Whether an error is worth retrying: connection errors, timeouts, 408/409/429/5xx."""
    if isinstance(exc, APIConnectionError):
        return True
    if isinstance(exc, APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressTimeoutError",
    "RateLimitError",
    "SyncInAsyncContextError",
    "UnprocessableEntityError",
    "WorkbenchError",
    "error_class_for_status",
    "is_retryable",
    "make_status_error",
]
