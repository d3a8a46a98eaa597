"""``workbench tracker``: ``ui``, ``ls``, ``show``. Import-light: heavy modules load per command."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["tracker"]


@click.group(name="tracker")
def tracker() -> None:
    """Local-first experiment tracking: browse runs, start the viewer."""


def _store_option(fn: Any) -> Any:
    return click.option(
        "--store",
        "store_url",
        default=None,
        envvar="WORKBENCH_TRACKER_URL",
        help="SQLAlchemy URL or http(s) URL of a tracker (default: SQLite under WORKBENCH_HOME).",
    )(fn)


@tracker.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@_store_option
def ui(host: str, port: int, store_url: str | None) -> None:
    """Serve the tracker viewer (REST API + web UI)."""
    import uvicorn

    from workbench_tracker.viewer import create_app

    app = create_app(store_url)
    click.echo(f"workbench tracker UI on http://{host}:{port}/ (store: {app.state.store.url})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@tracker.command(name="ls")
@click.option("--project", default=None, help="Only this project.")
@click.option("--status", default=None, help="running, finished, failed or crashed.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_option
def ls(
    project: str | None,
    status: str | None,
    tags: tuple[str, ...],
    limit: int,
    as_json: bool,
    store_url: str | None,
) -> None:
    """List runs, newest first."""
    from workbench_tracker.store import get_store

    runs, total = get_store(store_url).list_runs(
        project=project, status=status, tags=list(tags), limit=limit
    )
    if as_json:
        click.echo(json.dumps({"runs": [r.to_dict() for r in runs], "total": total}, indent=2))
        return
    if not runs:
        click.echo("no runs")
        return
    click.echo(f"{'ID':14} {'PROJECT':16} {'STATUS':9} {'CREATED':20} NAME")
    for r in runs:
        created = r.created_at.strftime("%Y-%m-%d %H:%M:%S") if r.created_at else ""
        click.echo(f"{r.id:14} {r.project[:16]:16} {r.status:9} {created:20} {r.name}")
    if total > len(runs):
        click.echo(f"... {total - len(runs)} more (use --limit)")


@tracker.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_store_option
def show(run_id: str, as_json: bool, store_url: str | None) -> None:
    """Show one run: status, config, summary, metric keys."""
    from workbench_tracker.store import RunNotFoundError, get_store

    store = get_store(store_url)
    try:
        run = store.get_run(run_id)
    except RunNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    keys = store.metric_keys(run_id)
    if as_json:
        data = run.to_dict()
        data["metrics"] = {
            k: {"count": v["count"], "last_step": v["last_step"]} for k, v in keys.items()
        }
        data["environment"] = {k: v for k, v in run.environment.items() if k != "packages"}
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"run      {run.id}  ({run.name})")
    click.echo(f"project  {run.project}")
    click.echo(f"status   {run.status}")
    click.echo(f"created  {run.created_at}  finished {run.finished_at}")
    if run.tags:
        click.echo(f"tags     {', '.join(run.tags)}")
    if run.notes:
        click.echo(f"notes    {run.notes}")
    click.echo("config")
    for k, v in sorted(run.config.items()):
        click.echo(f"  {k} = {v!r}")
    click.echo("summary")
    for k, v in sorted(run.summary.items()):
        click.echo(f"  {k} = {v!r}")
    click.echo("metrics")
    for k, v in keys.items():
        click.echo(f"  {k}: {v['count']} points, last step {v['last_step']}")
    if run.error:
        click.echo(f"error    {run.error}")


try:  # commands from the tracker extras (export, import, remote, artifacts, ...)
    from workbench_tracker.cli_extras import COMMANDS  # type: ignore[import-not-found]

    for _cmd in COMMANDS:
        tracker.add_command(_cmd)
except ImportError:
    pass
