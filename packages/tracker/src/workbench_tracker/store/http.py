"""``HTTPStore``: the Store interface over a tracker viewer's REST/ingest API.

The SDK logs to a remote tracker exactly as it logs to a local file: ``wt.init(store=
"http://host:port")`` (or ``WORKBENCH_TRACKER_URL``). Each writer batch is one POST; connection
errors, 5xx, 429 and 503 are retried with workbench-core's backoff (``Retry-After`` honoured).
Downsampling runs on the server, so a chart of a million points moves a thousand over the wire.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from workbench_tracker.store.base import (
    AlertInfo,
    Envelope,
    MediaInfo,
    MetricRow,
    ProjectInfo,
    RunInfo,
    RunNotFoundError,
    Series,
    Store,
    StoreBusyError,
    StoreError,
    decode_float,
    encode_float,
)

__all__ = ["HTTPStore"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class HTTPStore(Store):
    """A store that is a remote tracker viewer.

    Args:
        url: the viewer's base URL (``http://127.0.0.1:8000`` or ``.../tracker`` when mounted).
        timeout: per-request timeout in seconds.
        max_attempts: attempts per request on retryable failures.
        api_key: sent as ``X-API-Key`` when set (default ``WORKBENCH_API_KEY``).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        api_key: str | None = None,
    ) -> None:
        import os

        import httpx

        self.url = url.rstrip("/")
        key = api_key or os.environ.get("WORKBENCH_API_KEY")
        headers = {"X-API-Key": key} if key else {}
        self._client = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        self._max_attempts = max_attempts
        self._lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        from workbench_core.retry import RetryDecision, RetryPolicy, parse_retry_after, retry_sync

        def classify(exc: BaseException | None, result: Any) -> RetryDecision:
            if exc is not None:
                return RetryDecision(isinstance(exc, httpx.TransportError))
            if result.status_code in (429, 502, 503, 504) or result.status_code >= 500:
                return RetryDecision(True, parse_retry_after(result.headers))
            return RetryDecision(False)

        policy = RetryPolicy(max_attempts=self._max_attempts, initial_delay=0.1, max_delay=4.0)
        try:
            resp = retry_sync(
                lambda: self._client.request(method, path, **kwargs), policy, classify=classify
            )
        except httpx.TransportError as exc:
            raise StoreBusyError(f"tracker server {self.url} unreachable: {exc}") from exc
        if resp.status_code == 404:
            raise RunNotFoundError(self._message(resp))
        if resp.status_code in (400, 409, 422):
            raise ValueError(self._message(resp))
        if resp.status_code >= 400:
            raise StoreError(f"{method} {path}: HTTP {resp.status_code}: {self._message(resp)}")
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    @staticmethod
    def _message(resp: Any) -> str:
        try:
            return str(resp.json()["error"]["message"])
        except Exception:
            return resp.text[:500]

    @staticmethod
    def _rid(run_id: str) -> str:
        return quote(run_id, safe="")

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, run: RunInfo) -> RunInfo:
        return RunInfo.from_dict(self._request("POST", "/api/ingest/runs", json=run.to_dict()))

    def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.from_dict(self._request("GET", f"/api/runs/{self._rid(run_id)}"))

    def update_run(self, run_id: str, **fields: Any) -> RunInfo:
        body = {k: _jsonable(v) for k, v in fields.items()}
        data = self._request("PATCH", f"/api/ingest/runs/{self._rid(run_id)}", json=body)
        return RunInfo.from_dict(data)

    def list_runs(
        self,
        *,
        project: str | None = None,
        tags: Sequence[str] = (),
        status: str | None = None,
        config: Mapping[str, Any] | None = None,
        sort: str = "-created_at",
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[RunInfo], int]:
        import json

        params: list[tuple[str, str]] = [
            ("sort", sort),
            ("limit", str(limit)),
            ("offset", str(offset)),
        ]
        if project is not None:
            params.append(("project", project))
        if status is not None:
            params.append(("status", status))
        params.extend(("tag", t) for t in tags)
        for k, v in (config or {}).items():
            params.append((f"config.{k}", v if isinstance(v, str) else json.dumps(v)))
        data = self._request("GET", "/api/runs", params=params)
        return [RunInfo.from_dict(r) for r in data["runs"]], int(data["total"])

    def delete_run(self, run_id: str) -> None:
        self._request("DELETE", f"/api/runs/{self._rid(run_id)}")

    def list_projects(self) -> list[ProjectInfo]:
        data = self._request("GET", "/api/projects")
        return [
            ProjectInfo(
                p["name"],
                int(p["run_count"]),
                datetime.fromisoformat(p["created_at"]) if p.get("created_at") else None,
            )
            for p in data["projects"]
        ]

    # -- metrics ------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, rows: Sequence[MetricRow]) -> None:
        if not rows:
            return
        body = {"rows": [[k, s, encode_float(v), t] for (k, s, v, t) in rows]}
        self._request("POST", f"/api/ingest/runs/{self._rid(run_id)}/metrics", json=body)

    def metric_keys(self, run_id: str) -> dict[str, dict[str, Any]]:
        try:
            data = self._request("GET", f"/api/runs/{self._rid(run_id)}/metrics")
        except RunNotFoundError:  # same answer as the SQL store: no keys
            return {}
        keys = data["keys"]
        for info in keys.values():
            info["last_value"] = decode_float(info.get("last_value"))
        return dict(keys)

    def metric_series(
        self,
        run_id: str,
        key: str,
        *,
        min_step: int | None = None,
        max_step: int | None = None,
        after_step: int | None = None,
        limit: int | None = None,
    ) -> Series:
        params: dict[str, Any] = {"key": key, "method": "none"}
        for name, value in (
            ("min_step", min_step),
            ("max_step", max_step),
            ("after_step", after_step),
            ("limit", limit),
        ):
            if value is not None:
                params[name] = value
        data = self._request("GET", f"/api/runs/{self._rid(run_id)}/series", params=params)
        return Series.from_dict(data)

    def metric_series_downsampled(
        self,
        run_id: str,
        key: str,
        *,
        points: int = 1000,
        method: str = "lttb",
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Series:
        params: dict[str, Any] = {"key": key, "points": points, "method": method}
        if min_step is not None:
            params["min_step"] = min_step
        if max_step is not None:
            params["max_step"] = max_step
        data = self._request("GET", f"/api/runs/{self._rid(run_id)}/series", params=params)
        return Series.from_dict(data)

    def metric_envelope(
        self,
        run_id: str,
        key: str,
        *,
        buckets: int = 500,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Envelope:
        if buckets < 1:
            raise ValueError("buckets: must be at least 1")
        # The band rides on a /series read; method=none with limit=1 keeps the series part of
        # the answer (and its read on the server) to one point.
        params: dict[str, Any] = {
            "key": key,
            "method": "none",
            "limit": 1,
            "envelope": "true",
            "buckets": buckets,
        }
        if min_step is not None:
            params["min_step"] = min_step
        if max_step is not None:
            params["max_step"] = max_step
        data = self._request("GET", f"/api/runs/{self._rid(run_id)}/series", params=params)
        return Envelope.from_dict(data["envelope"])

    # -- media and alerts ---------------------------------------------------------------------
    def add_media(
        self,
        run_id: str,
        key: str,
        step: int,
        data: bytes,
        *,
        mime: str = "image/png",
        caption: str = "",
        width: int | None = None,
        height: int | None = None,
    ) -> MediaInfo:
        body = {
            "key": key,
            "step": step,
            "mime": mime,
            "caption": caption,
            "width": width,
            "height": height,
            "data_b64": base64.b64encode(data).decode(),
        }
        out = self._request("POST", f"/api/ingest/runs/{self._rid(run_id)}/media", json=body)
        return MediaInfo(**out)

    def list_media(self, run_id: str, key: str | None = None) -> list[MediaInfo]:
        params = {"key": key} if key is not None else {}
        data = self._request("GET", f"/api/runs/{self._rid(run_id)}/media", params=params)
        return [MediaInfo(**m) for m in data["media"]]

    def get_media(self, media_id: int) -> tuple[MediaInfo, bytes]:
        try:
            meta = self._request("GET", f"/api/media/{int(media_id)}/info")
            raw = self._request("GET", f"/api/media/{int(media_id)}")
        except RunNotFoundError as exc:
            raise KeyError(f"media {media_id} not found") from exc
        return MediaInfo(**meta), bytes(raw)

    def add_alert(
        self,
        run_id: str,
        kind: str,
        message: str,
        *,
        key: str = "",
        step: int | None = None,
        value: float | None = None,
    ) -> AlertInfo:
        body: dict[str, Any] = {"kind": kind, "message": message, "key": key, "step": step}
        body["value"] = encode_float(value)
        data = self._request("POST", f"/api/ingest/runs/{self._rid(run_id)}/alerts", json=body)
        return AlertInfo.from_dict(data)

    def list_alerts(
        self, run_id: str | None = None, *, project: str | None = None, limit: int = 1000
    ) -> list[AlertInfo]:
        params: dict[str, Any] = {"limit": limit}
        if project is not None:
            params["project"] = project
        if run_id is not None:
            data = self._request("GET", f"/api/runs/{self._rid(run_id)}/alerts", params=params)
        else:
            data = self._request("GET", "/api/alerts", params=params)
        return [AlertInfo.from_dict(a) for a in data["alerts"]]

    def ping(self) -> bool:
        self._request("GET", "/readyz")
        return True

    def close(self) -> None:
        self._client.close()
