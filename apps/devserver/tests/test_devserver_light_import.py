"""Importing the dev server (what ``workbench --help`` and ``workbench dev --help`` do) stays light."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_devserver_cli_imports_no_torch_or_models() -> None:
    code = (
        "import sys, workbench_devserver.cli, workbench_devserver; "
        "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
