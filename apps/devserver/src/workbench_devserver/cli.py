"""``workbench dev`` and ``workbench demo``.

Both are plain click commands registered through the ``workbench.commands`` entry point group, so
the root ``workbench`` command imports this module only when one of them runs; nothing heavy is
imported at module level.
"""

from __future__ import annotations

import click

__all__ = ["demo", "dev"]


@click.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="TCP port (default 8000).")
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    show_default=True,
)
def dev(host: str | None, port: int | None, log_level: str) -> None:
    """Run serving, tracker and agent in one process, with a landing page at /."""
    from ._settings import DevServerSettings, is_loopback, serving_api_keys

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = DevServerSettings(**overrides)  # type: ignore[arg-type]
    if not is_loopback(settings.host) and not serving_api_keys():
        raise click.UsageError(
            f"refusing to bind {settings.host}: it is reachable from other machines and no API "
            "keys are configured. Set WORKBENCH_API_KEYS (comma separated) or bind 127.0.0.1."
        )

    import uvicorn

    from .app import create_app

    app = create_app(settings, banner=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )


@click.command()
@click.option(
    "--base-url",
    default=None,
    envvar="WORKBENCH_BASE_URL",
    help="Dev server to use; one is started when none answers there.",
)
@click.option("--steps", type=click.IntRange(1, 2000), default=200, show_default=True)
@click.option("--project", default="workbench-demo", show_default=True)
@click.option(
    "--keep-server/--stop-server",
    default=None,
    help="Keep a dev server the demo started running afterwards (default: when interactive).",
)
def demo(base_url: str | None, steps: int, project: str, keep_server: bool | None) -> None:
    """Fine-tune, sample, draw and ask the agent, all through the client SDK, visible in the UI."""
    from ._demo import run_demo

    code = run_demo(
        base_url=base_url or "http://127.0.0.1:8000",
        steps=steps,
        project=project,
        keep_server=keep_server,
    )
    raise SystemExit(code)
