"""cli: the lazy workbench group reads entry points and imports a command only to run it."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from workbench_core import cli

HEAVY = ("torch", "transformers", "diffusers", "sqlalchemy", "fastapi", "httpx")


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A plugin module on sys.path, exposed through a faked entry-point lookup."""
    mod = "wb_fake_plugin_mod"
    (tmp_path / f"{mod}.py").write_text(
        textwrap.dedent(
            """
            import click

            LOADED = True

            @click.command()
            @click.argument("who")
            def hello(who):
                '''Say hello.'''
                click.echo(f"hello {who}")

            not_a_command = 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(mod, None)
    eps = [
        importlib.metadata.EntryPoint("hello", f"{mod}:hello", cli.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("broken", "wb_no_such_module:cmd", cli.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("weird", f"{mod}:not_a_command", cli.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("other", "x:y", "some.other.group"),
    ]

    def fake_entry_points(**params: str):
        group = params.get("group")
        return [ep for ep in eps if group is None or ep.group == group]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    # A fresh group object so no command is cached from another test.
    monkeypatch.setattr(cli.main, "_loaded", {})
    yield mod
    sys.modules.pop(mod, None)


def test_help_lists_entry_point_commands_without_importing_them(fake_plugin: str) -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0, result.output
    for name in ("hello", "broken", "weird", "info"):
        assert name in result.output
    assert "other" not in result.output
    assert fake_plugin not in sys.modules


def test_command_module_is_imported_only_when_the_command_runs(fake_plugin: str) -> None:
    runner = CliRunner()
    runner.invoke(cli.main, ["info"])
    assert fake_plugin not in sys.modules
    result = runner.invoke(cli.main, ["hello", "world"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello world\n"
    assert fake_plugin in sys.modules


def test_subcommand_help_shows_the_commands_own_help(fake_plugin: str) -> None:
    result = CliRunner().invoke(cli.main, ["hello", "--help"])
    assert result.exit_code == 0
    assert "Say hello." in result.output


def test_broken_plugin_fails_only_its_own_command_with_a_clear_message(fake_plugin: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli.main, ["broken", "--flag"])
    assert result.exit_code == 1
    assert "could not be loaded" in result.output and "wb_no_such_module" in result.output
    result = runner.invoke(cli.main, ["weird"])
    assert result.exit_code == 1 and "not a command" in result.output
    assert runner.invoke(cli.main, ["hello", "x"]).exit_code == 0


def test_unknown_command_is_a_usage_error(fake_plugin: str) -> None:
    result = CliRunner().invoke(cli.main, ["nope"])
    assert result.exit_code == 2
    assert "No such command 'nope'" in result.output


def test_version_prints_the_core_version() -> None:
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == f"workbench {cli._version()}"


def test_info_json_reports_home_and_commands(
    fake_plugin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("WORKBENCH_API_KEY", "secret-value")
    result = CliRunner().invoke(cli.main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["workbench_home"] == str(tmp_path / "h")
    assert data["commands"]["hello"] == f"{fake_plugin}:hello"
    assert "secret-value" not in result.output


def test_lazy_group_is_a_click_group() -> None:
    assert isinstance(cli.main, click.Group) and isinstance(cli.main, cli.LazyGroup)


def test_root_help_in_a_fresh_interpreter_imports_no_heavy_library(tmp_path: Path) -> None:
    # Runs with the real installed entry points (serving, tracker, ...): none may be imported.
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit, json, sys

            HEAVY = {HEAVY!r}

            def report():
                loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
                sys.__stderr__.write("HEAVY=" + json.dumps(loaded) + "\\n")

            atexit.register(report)
            from workbench_core.cli import main
            main(["--help"])
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Commands:" in proc.stdout
    line = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == []
