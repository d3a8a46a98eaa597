"""Import weight, the public API list, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import workbench_tracker as wt


def test_import_does_not_pull_heavy_libraries() -> None:
    code = (
        "import sys, workbench_tracker; "
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'sqlalchemy', 'fastapi', "
        "'numpy', 'httpx') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_module_is_import_light() -> None:
    code = (
        "import sys, workbench_tracker.cli; "
        "print([m for m in ('sqlalchemy', 'fastapi', 'uvicorn', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_is_exported() -> None:
    for name in wt.__all__:
        if name == "run":
            continue
        assert getattr(wt, name) is not None, name
    assert wt.run is None


def test_cli_ls_and_show(sqlite_url: str) -> None:
    from workbench_tracker.cli import tracker

    with wt.init(project="cli", name="shown", config={"lr": 0.5}, store=sqlite_url) as run:
        run.log({"loss": 1.0})
    runner = CliRunner()
    res = runner.invoke(tracker, ["ls", "--store", sqlite_url])
    assert res.exit_code == 0 and run.id in res.output and "finished" in res.output
    res = runner.invoke(tracker, ["ls", "--store", sqlite_url, "--json"])
    assert json.loads(res.output)["total"] == 1
    res = runner.invoke(tracker, ["show", run.id, "--store", sqlite_url])
    assert res.exit_code == 0 and "lr = 0.5" in res.output and "loss: 1 points" in res.output
    res = runner.invoke(tracker, ["show", "missing", "--store", sqlite_url])
    assert res.exit_code != 0 and "not found" in res.output
    res = runner.invoke(tracker, ["ui", "--port", "99999"])
    assert res.exit_code == 2 and "port" in res.output.lower()


def test_cli_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="workbench.commands")}
    assert names.get("tracker") == "workbench_tracker.cli:tracker"


def test_get_store_defaults_to_sqlite_under_workbench_home_and_honours_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench_tracker.store import SQLStore, get_store

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "wbhome"))
    default = get_store(cached=False)
    assert isinstance(default, SQLStore)
    assert (tmp_path / "wbhome" / "tracker.db").exists()
    default.close()
    other = tmp_path / "other.db"
    monkeypatch.setenv("WORKBENCH_TRACKER_URL", f"sqlite:///{other}")
    assert get_store() is get_store()  # one engine per URL per process
    with wt.init(project="env") as run:
        run.log({"x": 1.0})
    assert wt.Api(f"sqlite:///{other}").run(run.id).metric("x") == ([0], [1.0])
