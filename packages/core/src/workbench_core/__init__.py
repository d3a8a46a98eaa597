"""workbench-core: the mechanisms two or more Workbench packages share.

Retry with backoff (``retry``), an in-process event bus (``events``), Server-Sent Events
(``sse``), cancellation tokens (``cancel``), a background event-loop thread (``aio``), the serving
wire types (``protocol``), the lazy ``workbench`` CLI (``cli``) and settings (``config``).

Names are loaded on first use so that ``import workbench_core`` stays cheap: the CLI's
``--help`` and every light package import this, and pydantic/click load only when needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # aio
    "LoopThread": "aio",
    "LoopThreadError": "aio",
    "get_loop_thread": "aio",
    # cancel
    "CancelToken": "cancel",
    "Cancelled": "cancel",
    # config
    "WorkbenchSettings": "config",
    "models_dir": "config",
    "workbench_home": "config",
    "workbench_path": "config",
    # events
    "GAP": "events",
    "Event": "events",
    "EventBus": "events",
    "Subscription": "events",
    # retry
    "GIVE_UP": "retry",
    "RETRY": "retry",
    "RetryDecision": "retry",
    "RetryPolicy": "retry",
    "RetryState": "retry",
    "parse_retry_after": "retry",
    "retry_async": "retry",
    "retry_on": "retry",
    "retry_on_exception": "retry",
    "retry_sync": "retry",
    # sse
    "SSEDecoder": "sse",
    "ServerSentEvent": "sse",
    "aiter_sse": "sse",
    "encode": "sse",
    "encode_comment": "sse",
    "encode_event": "sse",
    "sse_stream": "sse",
    # protocol
    "ErrorBody": "protocol",
    "ErrorDetail": "protocol",
}

__all__ = [
    "GAP",
    "GIVE_UP",
    "RETRY",
    "CancelToken",
    "Cancelled",
    "ErrorBody",
    "ErrorDetail",
    "Event",
    "EventBus",
    "LoopThread",
    "LoopThreadError",
    "RetryDecision",
    "RetryPolicy",
    "RetryState",
    "SSEDecoder",
    "ServerSentEvent",
    "Subscription",
    "WorkbenchSettings",
    "__version__",
    "aiter_sse",
    "encode",
    "encode_comment",
    "encode_event",
    "get_loop_thread",
    "models_dir",
    "parse_retry_after",
    "retry_async",
    "retry_on",
    "retry_on_exception",
    "retry_sync",
    "sse_stream",
    "workbench_home",
    "workbench_path",
]

if TYPE_CHECKING:
    from .aio import LoopThread, LoopThreadError, get_loop_thread
    from .cancel import Cancelled, CancelToken
    from .config import WorkbenchSettings, models_dir, workbench_home, workbench_path
    from .events import GAP, Event, EventBus, Subscription
    from .protocol import ErrorBody, ErrorDetail
    from .retry import (
        GIVE_UP,
        RETRY,
        RetryDecision,
        RetryPolicy,
        RetryState,
        parse_retry_after,
        retry_async,
        retry_on,
        retry_on_exception,
        retry_sync,
    )
    from .sse import (
        ServerSentEvent,
        SSEDecoder,
        aiter_sse,
        encode,
        encode_comment,
        encode_event,
        sse_stream,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
