"""``workbench serve``: run the serving app under uvicorn with a start-up summary.

Import-light on purpose: ``workbench --help`` imports this module, so torch, transformers and the
web stack are imported only inside the command.
"""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--host", default=None, help="Bind address (default 127.0.0.1; WORKBENCH_HOST).")
@click.option("--port", default=None, type=int, help="Port (default 8000; WORKBENCH_PORT).")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model to serve: preset (tiny-llama, tiny-sd, tiny-qwen-vl), path or hub id; "
    "'kind:spec' forces a kind. Repeat for several. Default: WORKBENCH_MODELS or all presets.",
)
@click.option(
    "--training-model",
    "training_models",
    multiple=True,
    help="Text model that backs LoRA training runs (default tiny-llama).",
)
@click.option("--device", default=None, help="cuda, cuda:1, cpu or auto (default auto).")
@click.option("--dtype", default=None, help="bfloat16, float16, float32 or auto (default auto).")
@click.option("--log-level", default="info", show_default=True)
def serve(
    host: str | None,
    port: int | None,
    models: tuple[str, ...],
    training_models: tuple[str, ...],
    device: str | None,
    dtype: str | None,
    log_level: str,
) -> None:
    """Serve text, image, vision and LoRA training models over HTTP (/api/v1 and /v1)."""
    import logging

    from rich.console import Console
    from rich.table import Table

    from workbench_serving.settings import InsecureBindError, ServingSettings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if models:
        overrides["models"] = list(models)
    if training_models:
        overrides["training_models"] = [m for m in training_models if m and m != "none"]
    if device is not None:
        overrides["device"] = device
    if dtype is not None:
        overrides["dtype"] = dtype
    settings = ServingSettings(**overrides)  # type: ignore[arg-type]

    console = Console(stderr=True)
    from workbench_serving.engines._device import pick_device

    try:
        dev, dt = pick_device(
            None if settings.device == "auto" else settings.device,
            None if settings.dtype == "auto" else settings.dtype,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device/--dtype") from exc
    settings = settings.model_copy(
        update={"device": str(dev), "dtype": str(dt).removeprefix("torch.")}
    )

    from workbench_serving.app import create_app

    try:
        app = create_app(settings)
    except InsecureBindError as exc:
        raise click.ClickException(str(exc)) from exc

    table = Table(title="Workbench serving", show_header=True)
    table.add_column("setting")
    table.add_column("value")
    scheme_host = f"http://{settings.host}:{settings.port}"
    table.add_row("native API", f"{scheme_host}/api/v1")
    table.add_row("OpenAI API", f"{scheme_host}/v1")
    table.add_row("metrics", f"{scheme_host}/metrics")
    table.add_row("models", ", ".join(settings.models) or "(none)")
    table.add_row("training", ", ".join(settings.training_models) or "(off)")
    table.add_row("device / dtype", f"{settings.device} / {settings.dtype}")
    b = settings.batching
    table.add_row(
        "batching",
        f"max_batch_size={b.max_batch_size} max_wait_ms={b.max_wait_ms} "
        f"max_queue_size={b.max_queue_size}",
    )
    table.add_row(
        "auth", f"{len(settings.api_keys)} API key(s)" if settings.api_keys else "open (loopback)"
    )
    console.print(table)

    import uvicorn

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
    )
    from workbench_serving.api.middleware import RequestIdLogFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdLogFilter())
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level.lower())
