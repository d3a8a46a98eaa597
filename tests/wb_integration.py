"""Helpers shared by the integration tests (kept out of conftest so tests can import them)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_TIMEOUT_S = float(os.environ.get("WORKBENCH_TEST_READY_TIMEOUT", "300"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workbench_cmd() -> list[str]:
    """The installed ``workbench`` console script (beside this interpreter), as a user runs it."""
    script = Path(sys.executable).with_name("workbench")
    if script.exists():
        return [str(script)]
    found = shutil.which("workbench")
    if found:
        return [found]
    return [sys.executable, "-c", "from workbench_core.cli import main; main()"]


@dataclass
class DevServer:
    """A running ``workbench dev``."""

    base_url: str
    home: Path
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "WORKBENCH_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Offline runs must not depend on a Gemini key the developer happens to have.
    env.pop("GEMINI_API_KEY", None)
    env.pop("WORKBENCH_API_KEYS", None)
    env.pop("WORKBENCH_BASE_URL", None)
    return env
