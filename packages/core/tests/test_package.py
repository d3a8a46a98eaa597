"""The package surface: light import, complete and working re-exports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import workbench_core

MODULES = ("aio", "cancel", "config", "events", "retry", "sse", "protocol")


def test_import_workbench_core_loads_no_heavy_library() -> None:
    code = (
        "import json, sys\n"
        "import workbench_core\n"
        "from workbench_core import EventBus, RetryPolicy, CancelToken, LoopThread, encode\n"
        "heavy = ('torch', 'transformers', 'diffusers', 'sqlalchemy', 'fastapi', 'httpx')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_bare_import_does_not_load_pydantic_or_click() -> None:
    code = "import sys, workbench_core; print(sorted({'pydantic', 'click'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("name", [n for n in workbench_core.__all__ if n != "__version__"])
def test_every_exported_name_resolves_to_its_module_object(name: str) -> None:
    value = getattr(workbench_core, name)
    module = __import__(f"workbench_core.{workbench_core._EXPORTS[name]}", fromlist=[name])
    assert value is getattr(module, name)


def test_every_public_name_of_each_module_is_exported_from_the_package() -> None:
    exported = set(workbench_core.__all__)
    for mod_name in MODULES:
        module = __import__(f"workbench_core.{mod_name}", fromlist=["*"])
        public = set(getattr(module, "__all__", ()))
        missing = public - exported
        if mod_name == "protocol":
            continue  # owned by serving; the shared error types are re-exported by name
        assert not missing, f"{mod_name} exports {missing} not re-exported by workbench_core"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = workbench_core.no_such_name  # type: ignore[attr-defined]
