"""The ``workbench`` command: a lazy click group assembled from installed packages.

Why lazy: each package (serving, tracker, client, agent, devserver) contributes subcommands
through the ``workbench.commands`` entry-point group, and several of them import torch or a web
framework at module level. ``workbench --help`` must stay instant and must work even when one
plugin is broken, so listing commands reads only entry-point metadata, and a command's module is
imported only when that command is invoked (or its own ``--help`` is asked for).

An entry point's value is ``"module:attr"`` naming a ``click.Command`` (or ``click.Group``)::

    [project.entry-points."workbench.commands"]
    serve = "workbench_serving.cli:serve"
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import Any

import click

__all__ = ["ENTRY_POINT_GROUP", "LazyGroup", "main"]

ENTRY_POINT_GROUP = "workbench.commands"
_DIST_NAME = "workbench-core"


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed command entry points by name; the first one wins on a name clash, in a stable
    order (by distribution name), so the result does not depend on sys.path order."""
    # Looked up through the module at call time so tests can monkeypatch it.
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))

    def key(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
        dist = getattr(ep, "dist", None)
        return (dist.name if dist is not None else "", ep.name)

    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in sorted(eps, key=key):
        found.setdefault(ep.name, ep)
    return found


def _dist_label(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.value.partition(":")[0]
    return str(dist.name)


class _BrokenCommand(click.Command):
    """Stands in for a plugin that failed to import, so the rest of the CLI keeps working."""

    def __init__(self, name: str, ep: importlib.metadata.EntryPoint, error: BaseException):
        self._error = error
        self._ep = ep
        super().__init__(
            name,
            help=f"(failed to load {ep.value}: {error})",
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            add_help_option=False,
        )

    def invoke(self, ctx: click.Context) -> Any:
        raise click.ClickException(
            f"command {self.name!r} from {_dist_label(self._ep)} could not be loaded "
            f"({self._ep.value}): {type(self._error).__name__}: {self._error}"
        )


class LazyGroup(click.Group):
    """A click group whose subcommands come from entry points and are imported on demand.

    Commands added with ``add_command`` (built-ins) take precedence over entry points.

    Args:
        entry_point_group: the entry-point group to read.
        **kwargs: passed to ``click.Group``.
    """

    def __init__(self, *args: Any, entry_point_group: str = ENTRY_POINT_GROUP, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.entry_point_group = entry_point_group
        self._loaded: dict[str, click.Command] = {}

    def _eps(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self.entry_point_group == ENTRY_POINT_GROUP:
            return _entry_points()
        eps = importlib.metadata.entry_points(group=self.entry_point_group)
        return {ep.name: ep for ep in eps}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self._eps()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name in self._loaded:
            return self._loaded[cmd_name]
        ep = self._eps().get(cmd_name)
        if ep is None:
            return None
        cmd: click.Command
        try:
            obj = ep.load()
        except Exception as exc:
            cmd = _BrokenCommand(cmd_name, ep, exc)
        else:
            if isinstance(obj, click.Command):
                cmd = obj
            else:
                cmd = _BrokenCommand(
                    cmd_name, ep, TypeError(f"{ep.value} is a {type(obj).__name__}, not a command")
                )
        self._loaded[cmd_name] = cmd
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands without importing plugin modules: built-ins show their own help,
        plugins show the package that provides them (read from distribution metadata)."""
        eps = self._eps()
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit=60)))
            elif name in self._loaded:
                rows.append((name, self._loaded[name].get_short_help_str(limit=60)))
            else:
                rows.append((name, f"(from {_dist_label(eps[name])}; see `{name} --help`)"))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _version() -> str:
    try:
        return importlib.metadata.version(_DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"workbench {_version()}")
    seen: set[str] = set()
    for ep in _entry_points().values():
        dist = getattr(ep, "dist", None)
        if dist is None or dist.name in seen or dist.name == _DIST_NAME:
            continue
        seen.add(dist.name)
        click.echo(f"  {dist.name} {dist.version}")
    ctx.exit()


@click.group(
    cls=LazyGroup,
    name="workbench",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version of workbench and of each installed package, then exit.",
)
def main() -> None:
    """Workbench: serve models, train LoRA adapters, track experiments, run agents.

    Subcommands come from the installed workbench packages.
    """


@main.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Show where Workbench keeps its files and which commands are installed."""
    import json

    from .config import models_dir, workbench_home

    data = {
        "version": _version(),
        "python": sys.version.split()[0],
        "workbench_home": str(workbench_home(create=False)),
        "models_dir": str(models_dir(create=False)),
        "commands": {name: ep.value for name, ep in sorted(_entry_points().items())},
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith("WORKBENCH_")
            and "KEY" not in k
            and "TOKEN" not in k
            and "SECRET" not in k
        },
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"workbench {data['version']} (python {data['python']})")
    click.echo(f"home:   {data['workbench_home']}")
    click.echo(f"models: {data['models_dir']}")
    click.echo("commands:")
    for name, value in data["commands"].items():  # type: ignore[attr-defined]
        click.echo(f"  {name:<12} {value}")


if __name__ == "__main__":  # pragma: no cover
    main()
