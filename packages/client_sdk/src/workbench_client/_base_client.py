"""The one request pipeline every Workbench call goes through (the Stainless pattern).

build -> send (httpx) -> retry (workbench_core.retry) -> map errors -> parse (protocol types).

Resources never talk to httpx: a resource method builds a body and calls ``_get``/``_post``/
``_stream`` here, so API keys, idempotency keys, retries, error mapping and parsing are decided
once, in this module, for every endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast, overload

import httpx

from workbench_core.retry import (
    RetryDecision,
    RetryPolicy,
    RetryState,
    parse_retry_after,
    retry_async,
)
from workbench_core.sse import ServerSentEvent, aiter_sse

from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    is_retryable,
    make_status_error,
)

T = TypeVar("T")

log = logging.getLogger("workbench_client")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
DEFAULT_MAX_RETRIES = 4
DEFAULT_MAX_CONNECTIONS = 100
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# An SSE ``error`` event carries no HTTP status (the stream already answered 200): its type does.
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "cancelled": 499,
    "unavailable": 503,
    "timeout_error": 504,
}


def _classify(exc: BaseException | None, result: Any) -> RetryDecision:
    """Retry connection errors, timeouts, 408/409/429 and 5xx, honouring ``Retry-After``."""
    if exc is None or not is_retryable(exc):
        return RetryDecision(retry=False)
    return RetryDecision(retry=True, delay=getattr(exc, "retry_after", None))


def _decode_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


class AsyncAPIClient:
    """Owns the HTTP connection pool and runs every request through one pipeline.

    Args:
        base_url: server root (default ``WORKBENCH_BASE_URL`` or ``http://127.0.0.1:8000``).
        api_key: sent as ``X-API-Key`` (default ``WORKBENCH_API_KEY``).
        timeout: seconds, or an ``httpx.Timeout``, per attempt.
        max_retries: retries after the first attempt (used when no ``retry_policy`` is given).
        retry_policy: the full backoff policy; tests inject one with tiny delays.
        max_connections: the connection-pool bound; concurrent calls beyond it queue.
        http_client: bring your own ``httpx.AsyncClient`` (its base URL is ignored).
        transport: an httpx transport (for ASGI in-process tests).
        default_headers: extra headers on every request.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_policy: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        default_headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        base = base_url or os.environ.get("WORKBENCH_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = base.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("WORKBENCH_API_KEY")
        if timeout is None:
            self.timeout = DEFAULT_TIMEOUT
        elif isinstance(timeout, httpx.Timeout):
            self.timeout = timeout
        else:
            self.timeout = httpx.Timeout(float(timeout), connect=min(5.0, float(timeout)))
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.retry_policy = retry_policy or RetryPolicy(max_attempts=max_retries + 1)
        self.max_connections = max_connections
        self._default_headers = dict(default_headers or {})
        self._sleep = sleep
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=min(max_connections, 32),
            ),
            transport=transport,
        )

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Close the connection pool (only when this client created it)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ building

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/"):
            path = f"{API_PREFIX}/{path}"
        return f"{self.base_url}{path}"

    def _headers(
        self, extra: Mapping[str, str] | None, idempotency_key: str | None, attempt: int
    ) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "workbench-client/0.1"}
        headers.update(self._default_headers)
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if attempt > 1:
            headers["X-Retry-Count"] = str(attempt - 1)
        if extra:
            headers.update(extra)
        return headers

    @staticmethod
    def new_idempotency_key() -> str:
        """A fresh key for one mutating call; its retries reuse it so the server applies it once."""
        return f"wb-{uuid.uuid4().hex}"

    # ------------------------------------------------------------------ sending

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
        timeout: httpx.Timeout | None,
        stream: bool,
    ) -> httpx.Response:
        request = self._client.build_request(
            method,
            url,
            json=json,
            params=params,
            headers=headers,
            timeout=timeout if timeout is not None else self.timeout,
        )
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(method=method, url=url) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"Connection error: {type(exc).__name__}: {exc}".rstrip(": "),
                method=method,
                url=url,
            ) from exc
        if response.status_code >= 400:
            try:
                if stream:
                    await response.aread()
                body = _decode_body(response)
            except httpx.HTTPError as exc:
                raise APIConnectionError(
                    f"Connection error reading an error body: {exc}", method=method, url=url
                ) from exc
            finally:
                if stream:
                    await response.aclose()
            raise make_status_error(
                response.status_code,
                body,
                request_id=response.headers.get("x-request-id"),
                method=method,
                url=url,
                retry_after=parse_retry_after(response.headers),
                has_api_key=bool(self.api_key),
            )
        return response

    async def _send_with_retries(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        idempotency_key: str | None = None,
        retry_policy: RetryPolicy | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        method = method.upper()
        url = self._url(path)
        if idempotency_key is None and method in MUTATING_METHODS:
            idempotency_key = self.new_idempotency_key()
        per_call_timeout: httpx.Timeout | None
        if timeout is None or isinstance(timeout, httpx.Timeout):
            per_call_timeout = timeout
        else:
            per_call_timeout = httpx.Timeout(float(timeout), connect=min(5.0, float(timeout)))
        attempt = 0

        async def once() -> httpx.Response:
            nonlocal attempt
            attempt += 1
            return await self._send_once(
                method,
                url,
                json=json,
                params=params,
                headers=self._headers(headers, idempotency_key, attempt),
                timeout=per_call_timeout,
                stream=stream,
            )

        def on_retry(state: RetryState) -> None:
            log.info(
                "retrying %s %s (attempt %d failed: %s) in %.3f s",
                method,
                url,
                state.attempt,
                state.exception,
                state.delay,
            )

        return cast(
            httpx.Response,
            await retry_async(
                once,
                retry_policy or self.retry_policy,
                classify=_classify,
                sleep=self._sleep,
                on_retry=on_retry,
            ),
        )

    # ------------------------------------------------------------------ parsing

    @staticmethod
    def _parse(response: httpx.Response, cast_to: Any, method: str) -> Any:
        body = _decode_body(response)
        if cast_to is None:
            return body
        validate = getattr(cast_to, "model_validate", None)
        if validate is None:
            return body
        try:
            return validate(body)
        except ValueError as exc:
            raise APIResponseValidationError(
                f"The server's response does not match {cast_to.__name__}: {exc}",
                method=method,
                url=str(response.request.url),
                body=body,
            ) from exc

    # ------------------------------------------------------------------ verbs

    @overload
    async def request(self, method: str, path: str, *, cast_to: type[T], **kw: Any) -> T: ...
    @overload
    async def request(self, method: str, path: str, *, cast_to: None = None, **kw: Any) -> Any: ...
    async def request(
        self, method: str, path: str, *, cast_to: type[T] | None = None, **kw: Any
    ) -> T | Any:
        """Send one call through the pipeline and parse its body into ``cast_to``.

        Keyword args: ``json``, ``params``, ``headers``, ``timeout``, ``idempotency_key``,
        ``retry_policy``.
        """
        response = await self._send_with_retries(method, path, **kw)
        return self._parse(response, cast_to, method.upper())

    async def _get(self, path: str, *, cast_to: type[T], **kw: Any) -> T:
        return await self.request("GET", path, cast_to=cast_to, **kw)

    async def _post(self, path: str, *, cast_to: type[T], body: Any = None, **kw: Any) -> T:
        return await self.request("POST", path, cast_to=cast_to, json=body, **kw)

    async def _stream(
        self, path: str, *, body: Any = None, method: str = "POST", **kw: Any
    ) -> AsyncIterator[ServerSentEvent]:
        """Open an SSE stream (retrying only until it is established) and yield its events.

        Once events have flowed a broken stream is not replayed: the caller has already seen
        part of the output, so it gets an ``APIConnectionError`` instead.
        """
        headers = dict(kw.pop("headers", None) or {})
        headers["Accept"] = "text/event-stream"
        response = await self._send_with_retries(
            method, path, json=body, headers=headers, stream=True, **kw
        )
        try:
            async for event in aiter_sse(response.aiter_bytes()):
                if event.event == "error":
                    payload: Any
                    try:
                        payload = event.json()
                    except ValueError:
                        payload = event.data
                    status = 500
                    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                        err = payload["error"]
                        status = int(err.get("status") or _STATUS_BY_TYPE.get(err.get("type"), 500))
                    raise make_status_error(
                        status,
                        payload,
                        request_id=response.headers.get("x-request-id"),
                        method=method,
                        url=str(response.request.url),
                    )
                yield event
        except httpx.TimeoutException as exc:
            raise APITimeoutError(method=method, url=str(response.request.url)) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"The stream broke: {exc}", method=method, url=str(response.request.url)
            ) from exc
        finally:
            await response.aclose()


__all__ = [
    "API_PREFIX",
    "DEFAULT_BASE_URL",
    "APIStatusError",
    "AsyncAPIClient",
]
