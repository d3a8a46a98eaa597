"""``workbench tracker export | import | remote ...``: commands from the tracker extras.

Import-light on purpose (only click at import time) so ``workbench --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["COMMANDS", "export_cmd", "import_cmd", "remote"]


def _engine(store_url: str | None) -> Any:
    from workbench_tracker.store import get_store

    store = get_store(store_url)
    engine = getattr(store, "engine", None)
    if engine is None:
        raise click.UsageError(
            "--store: export/import need a SQL store (sqlite:///... or postgresql://...)"
        )
    return engine


_store_option = click.option(
    "--store",
    "store_url",
    default=None,
    envvar="WORKBENCH_TRACKER_URL",
    help="SQLAlchemy URL of the tracker database (default: SQLite under WORKBENCH_HOME).",
)


@click.command(name="export")
@click.option("--project", default=None, help="Only runs of this project (required for archive).")
@click.option("--run", "run_ids", multiple=True, help="Only this run id (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable).")
@click.option("--status", default=None, help="Only runs with this status.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "parquet", "tensorboard", "archive"]),
    default="csv",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="File (or directory for tensorboard) to write.",
)
@_store_option
def export_cmd(
    project: str | None,
    run_ids: tuple[str, ...],
    tags: tuple[str, ...],
    status: str | None,
    fmt: str,
    output: Path,
    store_url: str | None,
) -> None:
    """Export runs (CSV/JSON/Parquet/TensorBoard) or a whole project as a portable archive."""
    from workbench_tracker.exporting import export_project, export_runs, load_runs

    engine = _engine(store_url)
    if fmt == "archive":
        if not project:
            raise click.UsageError("--project: required with --format archive")
        manifest = export_project(engine, project, output, run_ids=list(run_ids) or None)
        c = manifest["counts"]
        click.echo(
            f"wrote {output}: {c['runs']} runs, {c['metrics']} points, "
            f"{c['artifact_versions']} artifact versions"
        )
        return
    runs = load_runs(
        engine, project=project, run_ids=list(run_ids) or None, tags=list(tags), status=status
    )
    if not runs:
        raise click.ClickException("no runs match the filters")
    export_runs(runs, fmt, output)
    click.echo(f"wrote {output}: {len(runs)} runs, {sum(len(r.metrics) for r in runs)} points")


@click.command(name="import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--tensorboard", is_flag=True, help="PATH is a TensorBoard log directory.")
@click.option("--project", default=None, help="Target project (required with --tensorboard).")
@click.option("--remap-ids", is_flag=True, help="Give imported runs new (stable) ids.")
@_store_option
def import_cmd(
    path: Path, tensorboard: bool, project: str | None, remap_ids: bool, store_url: str | None
) -> None:
    """Import a project archive, or TensorBoard logs with --tensorboard."""
    from workbench_tracker.exporting import ArchiveError, import_archive, import_tensorboard

    engine = _engine(store_url)
    if tensorboard:
        if not project:
            raise click.UsageError("--project: required with --tensorboard")
        result = import_tensorboard(engine, path, project)
    else:
        try:
            result = import_archive(engine, path, project=project, remap_ids=remap_ids)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"project {result['project']}: imported {len(result['imported'])} runs, "
        f"skipped {len(result['skipped'])} already present"
    )


@click.group(name="remote")
def remote() -> None:
    """View a tracker on another machine over SSH (viewer started there, tunnelled here)."""


@remote.command(name="connect")
@click.argument("target")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="SSH port (22).")
@click.option(
    "-i",
    "--identity",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Private key file.",
)
@click.option("--password-prompt", is_flag=True, help="Ask for the SSH password.")
@click.option(
    "--save-password",
    is_flag=True,
    help="Keep the password in the keyring (or encrypted under WORKBENCH_HOME).",
)
@click.option(
    "--trust-host-key",
    "trust",
    is_flag=False,
    flag_value="yes",
    default=None,
    metavar="[SHA256:...]",
    help="Accept an unknown host key (optionally only this fingerprint) and record it.",
)
@click.option(
    "--known-hosts",
    type=click.Path(path_type=Path),
    default=None,
    help="known_hosts file (default ~/.ssh/known_hosts).",
)
@click.option("--python", default=None, help="Python on the remote host with workbench-tracker.")
@click.option("--remote-home", default=None, help="WORKBENCH_HOME on the remote host.")
@click.option(
    "--local-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Local port of the tunnel (0 = any free port).",
)
@click.option("--no-agent", is_flag=True, help="Do not use the SSH agent.")
def remote_connect(
    target: str,
    port: int | None,
    identity: str | None,
    password_prompt: bool,
    save_password: bool,
    trust: str | None,
    known_hosts: Path | None,
    python: str | None,
    remote_home: str | None,
    local_port: int,
    no_agent: bool,
) -> None:
    """Connect to TARGET (user@host), start its viewer and tunnel it here until Ctrl-C."""
    import signal
    import threading

    from workbench_tracker.remote import RemoteError, SSHTarget, parse_target, start_session

    try:
        user, host, ssh_port = parse_target(target, port)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TARGET") from exc
    password = click.prompt("SSH password", hide_input=True) if password_prompt else None
    ssh_target = SSHTarget(
        host=host,
        user=user,
        port=ssh_port,
        identity=identity,
        password=password,
        use_agent=not no_agent,
        known_hosts=known_hosts,
        trust_host_key=True if trust == "yes" else (trust or False),
        save_password=save_password,
    )
    try:
        session = start_session(
            ssh_target, python=python, remote_home=remote_home, local_port=local_port
        )
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from exc
    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(
        f"session {session.id}: {user}@{host} viewer at {session.url}  (Ctrl-C to stop)", err=False
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        gone = session.stop()
        click.echo(
            f"session {session.id} stopped"
            + ("" if gone else " (the remote viewer could not be confirmed stopped)")
        )


@remote.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def remote_list(as_json: bool) -> None:
    """List remote sessions started on this machine."""
    from workbench_tracker.remote import list_sessions

    sessions = list_sessions()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in sessions], indent=1))
        return
    if not sessions:
        click.echo("no remote sessions")
    for s in sessions:
        click.echo(
            f"{s.id}  {s.user}@{s.host}:{s.port}  {s.url}  {s.status}  "
            f"(remote pid {s.remote_pid}, started {s.started_at})"
        )


@remote.command(name="stop")
@click.argument("session_id", required=False)
@click.option("--all", "stop_all", is_flag=True, help="Stop every session.")
def remote_stop(session_id: str | None, stop_all: bool) -> None:
    """Stop a session (its remote viewer is killed and the tunnel closed)."""
    from workbench_tracker.paths import UnsafePathError
    from workbench_tracker.remote import list_sessions, stop_session

    if not session_id and not stop_all:
        raise click.UsageError("give SESSION_ID or --all")
    ids = [s.id for s in list_sessions()] if stop_all else [str(session_id)]
    for sid in ids:
        try:
            ok = stop_session(sid)
        except UnsafePathError as exc:
            raise click.BadParameter(str(exc), param_hint="SESSION_ID") from exc
        except KeyError as exc:
            raise click.ClickException(f"no session {sid!r} (see `remote list`)") from exc
        click.echo(f"session {sid} {'stopped' if ok else 'did not stop in time'}")


COMMANDS: list[click.Command] = [export_cmd, import_cmd, remote]
