"""workbench-client: a typed, async-first Tinker-style SDK for the Workbench model server.

``AsyncWorkbench`` is the client (one request pipeline, one attribute per API area);
``Workbench`` is its sync twin; ``ServiceClient``/``TrainingClient``/``SamplingClient`` are
Tinker's high-level shapes, returning ``APIFuture``s. Errors form the tree drawn in
``workbench_client._errors``.

Names load on first use: ``import workbench_client`` (and the ``workbench`` CLI's ``--help``)
imports neither httpx nor tokenizers, and never torch, transformers or diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # clients
    "AsyncWorkbench": "._client",
    "Workbench": "._client",
    "SampleStream": "._resources",
    "SyncSampleStream": "._client",
    # high-level
    "APIFuture": ".lib",
    "RetryConfig": ".lib",
    "RetryHandler": ".lib",
    "SamplingClient": ".lib",
    "ServiceClient": ".lib",
    "Tokenizer": ".lib",
    "TrainingClient": ".lib",
    # errors
    "APIConnectionError": "._errors",
    "APIError": "._errors",
    "APIResponseValidationError": "._errors",
    "APIStatusError": "._errors",
    "APITimeoutError": "._errors",
    "AuthenticationError": "._errors",
    "BadRequestError": "._errors",
    "ConflictError": "._errors",
    "InternalServerError": "._errors",
    "NotFoundError": "._errors",
    "PermissionDeniedError": "._errors",
    "ProgressTimeoutError": "._errors",
    "RateLimitError": "._errors",
    "SyncInAsyncContextError": "._errors",
    "UnprocessableEntityError": "._errors",
    "WorkbenchError": "._errors",
    # types
    "AdamParams": ".types",
    "Datum": ".types",
    "ModelInput": ".types",
    "ResponseFormat": ".types",
    "SamplingParams": ".types",
    # the retry policy type, for injecting one
    "RetryPolicy": "workbench_core.retry",
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIFuture",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AdamParams",
    "AsyncWorkbench",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "Datum",
    "InternalServerError",
    "ModelInput",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressTimeoutError",
    "RateLimitError",
    "ResponseFormat",
    "RetryConfig",
    "RetryHandler",
    "RetryPolicy",
    "SampleStream",
    "SamplingClient",
    "SamplingParams",
    "ServiceClient",
    "SyncInAsyncContextError",
    "SyncSampleStream",
    "Tokenizer",
    "TrainingClient",
    "UnprocessableEntityError",
    "Workbench",
    "WorkbenchError",
    "types",
]

if TYPE_CHECKING:
    from workbench_core.retry import RetryPolicy

    from . import types
    from ._client import AsyncWorkbench, SyncSampleStream, Workbench
    from ._errors import (
        APIConnectionError,
        APIError,
        APIResponseValidationError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConflictError,
        InternalServerError,
        NotFoundError,
        PermissionDeniedError,
        ProgressTimeoutError,
        RateLimitError,
        SyncInAsyncContextError,
        UnprocessableEntityError,
        WorkbenchError,
    )
    from ._resources import SampleStream
    from .lib import (
        APIFuture,
        RetryConfig,
        RetryHandler,
        SamplingClient,
        ServiceClient,
        Tokenizer,
        TrainingClient,
    )
    from .types import AdamParams, Datum, ModelInput, ResponseFormat, SamplingParams


def __getattr__(name: str) -> Any:
    if name == "types":
        return importlib.import_module(".types", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench_client' has no attribute {name!r}")
    mod = importlib.import_module(module, __name__ if module.startswith(".") else None)
    value = getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
