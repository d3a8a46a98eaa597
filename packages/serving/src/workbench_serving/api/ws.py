"""WebSocket at ``/api/v1/ws``: streaming sampling over one long-lived connection.

Protocol (JSON text frames):

- client -> ``{"type": "sample", "id": "<any>", "request": SampleRequest}``
  (a bare ``SampleRequest`` object is accepted too);
- server -> ``{"type": "token", "id", "index", "token", "text"}`` per token, then
  ``{"type": "done", "id", "response": SampleResponse}``, or
  ``{"type": "error", "id", "error": {type, message, request_id, param}}``;
- client -> ``{"type": "cancel", "id"}`` stops that request; closing the socket stops all.

Requests on one socket run concurrently (and batch together on the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from workbench_core.cancel import CancelToken
from workbench_core.protocol import SampleRequest
from workbench_serving.api.errors import error_payload, to_api_error
from workbench_serving.api.native import build_sample_item, count_tokens, to_sample_response
from workbench_serving.api.state import ServingState
from workbench_serving.engines.base import SampleItem

router = APIRouter(prefix="/api/v1")


@router.websocket("/ws")
async def ws_sample(websocket: WebSocket) -> None:
    st: ServingState = websocket.app.state.serving
    request_id = websocket.scope.get("state", {}).get("request_id")
    if st.ws_connections >= st.settings.max_ws_connections:
        await websocket.close(code=1013, reason="too many WebSocket connections")
        return
    await websocket.accept()
    st.ws_connections += 1
    send_lock = asyncio.Lock()
    running: dict[str, tuple[asyncio.Task[None], CancelToken]] = {}

    async def send(obj: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(obj))

    async def send_error(rid: str | None, exc: BaseException) -> None:
        err = to_api_error(exc)
        body = error_payload(request_id, err.status, err.message, type=err.type, param=err.param)
        await send({"type": "error", "id": rid, **body})

    async def run(rid: str, req: SampleRequest, token: CancelToken) -> None:
        loop = asyncio.get_running_loop()
        try:
            served, item = build_sample_item(st, req)
            assert isinstance(item, SampleItem)

            def on_token(index: int, tok: int, text: str) -> None:
                msg = {"type": "token", "id": rid, "index": index, "token": tok, "text": text}
                asyncio.run_coroutine_threadsafe(send(msg), loop)

            item.on_token = on_token
            item.cancel = token
            result = await served.scheduler.submit(
                item, token=token, timeout=st.settings.request_timeout_s
            )
            count_tokens(st, req.model, result)
            resp = to_sample_response(req.model, result)
            # Let token frames scheduled from the worker thread go out before "done".
            await asyncio.sleep(0)
            await send({"type": "done", "id": rid, "response": resp.model_dump()})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await send_error(rid, exc)
        finally:
            running.pop(rid, None)

    counter = 0
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                msg = json.loads(raw)
            except json.JSONDecodeError as exc:
                await send(
                    {
                        "type": "error",
                        "id": None,
                        **error_payload(
                            request_id, 400, f"body is not valid JSON: {exc}", param="body"
                        ),
                    }
                )
                continue
            if not isinstance(msg, dict):
                await send(
                    {
                        "type": "error",
                        "id": None,
                        **error_payload(
                            request_id, 400, "message must be a JSON object", param="body"
                        ),
                    }
                )
                continue
            kind = msg.get("type", "sample")
            counter += 1
            rid = str(msg.get("id") or counter)
            if kind == "cancel":
                entry = running.get(rid)
                if entry is not None:
                    entry[1].cancel("cancelled by client")
                continue
            if kind != "sample":
                await send(
                    {
                        "type": "error",
                        "id": rid,
                        **error_payload(
                            request_id, 400, f"type: unknown message type {kind!r}", param="type"
                        ),
                    }
                )
                continue
            payload = msg.get("request", msg if "model" in msg else None)
            if isinstance(payload, dict):
                payload = {k: v for k, v in payload.items() if k not in ("type", "id")}
            try:
                req = SampleRequest.model_validate(payload)
            except ValidationError as exc:
                first = exc.errors()[0]
                param = (
                    ".".join(str(p) for p in first["loc"] if not str(p)[:1].isupper()) or "request"
                )
                await send(
                    {
                        "type": "error",
                        "id": rid,
                        **error_payload(request_id, 422, f"{param}: {first['msg']}", param=param),
                    }
                )
                continue
            token = CancelToken()
            task = asyncio.create_task(run(rid, req, token))
            running[rid] = (task, token)
    except WebSocketDisconnect:
        pass
    finally:
        st.ws_connections -= 1
        for task, token in list(running.values()):
            token.cancel("client disconnected")
            task.cancel()
        if running:
            await asyncio.gather(*(t for t, _ in running.values()), return_exceptions=True)
