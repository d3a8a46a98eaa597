"""Settings of the combined dev server.

The dev server owns only what is its own (where it listens, which parts it composes, which LLM the
agent talks to); every package keeps its own settings class and reads its own ``WORKBENCH_*``
variables, so a setting means the same thing whether a package runs alone or inside ``workbench dev``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DevServerSettings", "is_loopback", "serving_api_keys"]


class DevServerSettings(BaseSettings):
    """Where the dev server listens and what it composes.

    Attributes:
        host: interface uvicorn binds (``WORKBENCH_HOST``).
        port: TCP port (``WORKBENCH_PORT``).
        public_url: the URL the agent's tools use to reach serving over HTTP; defaults to
            ``http://{host}:{port}`` (``WORKBENCH_PUBLIC_URL``).
        serving / tracker / agent: compose that part (``WORKBENCH_DEV_SERVING=0`` leaves it out).
        agent_model: the served model the agent runs on when no Gemini key is set.
        gemini_api_key: with a key, the agent runs on Gemini (``GEMINI_API_KEY``).
        gemini_model: which Gemini model.
    """

    model_config = SettingsConfigDict(
        env_prefix="WORKBENCH_", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = None
    serving: bool = Field(default=True, validation_alias=AliasChoices("WORKBENCH_DEV_SERVING"))
    tracker: bool = Field(default=True, validation_alias=AliasChoices("WORKBENCH_DEV_TRACKER"))
    agent: bool = Field(default=True, validation_alias=AliasChoices("WORKBENCH_DEV_AGENT"))
    agent_model: str | None = Field(
        default=None, validation_alias=AliasChoices("WORKBENCH_AGENT_MODEL")
    )
    gemini_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GEMINI_API_KEY", "WORKBENCH_GEMINI_API_KEY"),
        repr=False,
    )
    gemini_model: str = Field(
        default="gemini-2.5-flash", validation_alias=AliasChoices("WORKBENCH_GEMINI_MODEL")
    )

    @property
    def base_url(self) -> str:
        """The URL at which this server answers, as the agent's tools should call it."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def home(self) -> Path:
        """``WORKBENCH_HOME`` as every package resolves it."""
        try:
            from workbench_core.config import workbench_home

            return Path(workbench_home())
        except ImportError:  # pragma: no cover - core is a hard dependency
            return Path(os.environ.get("WORKBENCH_HOME", "~/.workbench")).expanduser()


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serving_api_keys() -> list[str]:
    """The API keys serving will enforce, read the way serving reads them.

    Serving owns the auth rule; asking its settings class keeps the dev CLI's refusal in step with
    the server's. Without serving installed, ``WORKBENCH_API_KEYS`` (comma separated) is read.
    """
    try:
        from workbench_serving.settings import ServingSettings

        keys = getattr(ServingSettings(), "api_keys", None)
    except Exception:
        keys = None
    if keys is None:
        raw = os.environ.get("WORKBENCH_API_KEYS", "") or os.environ.get("WORKBENCH_API_KEY", "")
        keys = [k.strip() for k in raw.split(",") if k.strip()]
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    return [str(getattr(k, "get_secret_value", lambda k=k: k)()) for k in keys]
