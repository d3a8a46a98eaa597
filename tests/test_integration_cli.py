"""The root ``workbench`` command, with every package installed."""

from __future__ import annotations

import os
import re
import subprocess

from wb_integration import workbench_cmd


def test_workbench_help_lists_every_package_command() -> None:
    out = subprocess.run(
        [*workbench_cmd(), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    commands = set(re.findall(r"^\s{2}(\w[\w-]*)\s", out.split("Commands:", 1)[1], re.M))
    assert {"dev", "demo", "serve", "tracker", "agent", "sample"} <= commands, out


def test_dev_refuses_a_public_address_without_api_keys() -> None:
    env_cmd = [*workbench_cmd(), "dev", "--host", "0.0.0.0", "--port", "1"]
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_API_KEYS"}
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode != 0
    assert "WORKBENCH_API_KEYS" in proc.stderr
    assert "0.0.0.0" in proc.stderr
