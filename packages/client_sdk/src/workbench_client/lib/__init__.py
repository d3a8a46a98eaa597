"""High-level, Tinker-shaped clients over the async pipeline (see ``_clients``)."""

from ._clients import SamplingClient, ServiceClient, TrainingClient
from ._futures import APIFuture
from ._retry_handler import RetryConfig, RetryHandler
from ._tokenizer import Tokenizer
from ._tracking import StepLogger, active_tracker_run

__all__ = [
    "APIFuture",
    "RetryConfig",
    "RetryHandler",
    "SamplingClient",
    "ServiceClient",
    "StepLogger",
    "Tokenizer",
    "TrainingClient",
    "active_tracker_run",
]
