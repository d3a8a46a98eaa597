"""Server settings (pydantic-settings, ``WORKBENCH_`` prefix).

Every bound the server enforces lives here so an operator can see and change it: batching per
model, queue sizes, deadlines, body size, idempotency and futures store sizes, API keys.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class BatchingSettings(BaseModel):
    """Per-model batching and queueing limits."""

    max_batch_size: int = Field(default=8, ge=1, le=1024)
    max_wait_ms: float = Field(default=5.0, ge=0.0, le=10_000.0)
    max_queue_size: int = Field(default=256, ge=1, le=1_000_000)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


class ServingSettings(BaseSettings):
    """What to serve and under which limits.

    ``models`` entries are preset names (``tiny-llama``, ``tiny-sd``, ``tiny-qwen-vl``), local
    paths or hub ids; ``kind:spec`` forces a kind (``text:/models/x``). A text model listed in
    ``training_models`` also backs LoRA training runs.
    """

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["tiny-llama", "tiny-sd", "tiny-qwen-vl"]
    )
    training_models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["tiny-llama"])
    device: str = "auto"  # auto -> cuda with bf16 when present, else cpu with fp32
    dtype: str = "auto"

    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    batching_per_model: dict[str, BatchingSettings] = Field(default_factory=dict)

    request_timeout_s: float = Field(default=120.0, gt=0.0)
    shutdown_grace_s: float = Field(default=30.0, ge=0.0)
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    idempotency_max_entries: int = Field(default=4096, ge=1)
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0.0)
    futures_max_entries: int = Field(default=4096, ge=1)
    futures_ttl_s: float = Field(default=3600.0, gt=0.0)

    # Image requests are the easiest way to ask a CPU for hours of work: bound them here.
    max_image_size: int = Field(default=1024, ge=8, le=4096)
    max_image_steps: int = Field(default=100, ge=1, le=1000)
    max_images_per_request: int = Field(default=8, ge=1, le=64)

    max_training_runs: int = Field(default=16, ge=1)
    # Checkpoints saved by earlier processes that are served again at start-up (newest first).
    max_restored_checkpoints: int = Field(default=32, ge=0)
    max_ws_connections: int = Field(default=256, ge=1)

    _split = field_validator("models", "training_models", "api_keys", mode="before")(_split_csv)

    def batching_for(self, model: str) -> BatchingSettings:
        return self.batching_per_model.get(model, self.batching)

    def is_loopback(self) -> bool:
        host = self.host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


class InsecureBindError(RuntimeError):
    """Raised when the server would listen beyond loopback with no API keys configured."""


def check_bind_is_safe(settings: ServingSettings) -> None:
    """Refuse an open server on a non-loopback address.

    Raises:
        InsecureBindError: bound beyond loopback and ``WORKBENCH_API_KEYS`` is empty.
    """
    if not settings.api_keys and not settings.is_loopback():
        raise InsecureBindError(
            f"refusing to serve on {settings.host!r} without API keys: anyone who can reach that "
            "address could use the models. Set WORKBENCH_API_KEYS=key1,key2 (clients send "
            "X-API-Key or Authorization: Bearer), or bind to 127.0.0.1."
        )
