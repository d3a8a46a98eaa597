"""Environment capture: what a run needs to be reproduced, collected cheaply.

Runs in the writer's thread right after ``init`` returns, so a script never waits for it. Never
imports torch (the GPU comes from ``nvidia-smi`` when it is on PATH); git output is bounded so a
huge uncommitted diff cannot bloat the database.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

__all__ = ["MAX_DIFF_BYTES", "capture_environment"]

MAX_DIFF_BYTES = 100_000


def _run(args: list[str], cwd: str | None = None, timeout: float = 5.0) -> str | None:
    try:
        out = subprocess.run(
            args, cwd=cwd, capture_output=True, timeout=timeout, check=False, text=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _packages() -> dict[str, str]:
    """Installed distributions as ``{name: version}``.

    Names and versions come from the ``<name>-<version>.dist-info`` directory names (a directory
    listing per ``sys.path`` entry) instead of parsing every METADATA file, which is ~50x slower;
    only entries whose directory name is not in that form fall back to importlib.metadata.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for fname in names:
            if fname.endswith(".dist-info"):
                stem = fname[: -len(".dist-info")]
                name, sep, version = stem.partition("-")
                if sep and version:
                    found.setdefault(name.replace("_", "-"), version)
                    continue
                try:
                    dist = metadata.Distribution.at(os.path.join(entry, fname))
                    found.setdefault(str(dist.metadata["Name"]), str(dist.version))
                except Exception:
                    continue
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def _git(cwd: str) -> dict[str, Any] | None:
    if shutil.which("git") is None:
        return None
    commit = _run(["git", "rev-parse", "HEAD"], cwd)
    if commit is None:
        return None
    info: dict[str, Any] = {"commit": commit.strip()}
    branch = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd)
    info["branch"] = branch.strip() if branch else None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd) or ""
    info["dirty"] = bool(status.strip())
    if info["dirty"]:
        diff = _run(["git", "diff", "HEAD"], cwd) or ""
        data = diff.encode()
        info["diff_truncated"] = len(data) > MAX_DIFF_BYTES
        info["diff"] = data[:MAX_DIFF_BYTES].decode(errors="ignore")
    remote = _run(["git", "config", "--get", "remote.origin.url"], cwd)
    info["remote"] = remote.strip() if remote else None
    return info


def _gpus() -> list[dict[str, str]] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = _run(
        [
            "nvidia-smi",
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ]
    )
    if not out:
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "memory_mb": parts[1], "driver": parts[2]})
    return gpus


def capture_environment(cwd: str | None = None) -> dict[str, Any]:
    """Python, platform, command line, packages, git state, GPUs and host of this process."""
    cwd = cwd or os.getcwd()
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "command": list(sys.argv),
        "cwd": cwd,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "packages": _packages(),
        "git": _git(cwd),
        "gpu": _gpus(),
    }
