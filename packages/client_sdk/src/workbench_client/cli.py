"""``workbench`` subcommands that talk to a Workbench server: health, models, sample, image,
vision, runs, checkpoints.

Lazy by design: this module imports only click at load time; httpx, rich and the client load
inside a command, so ``workbench --help`` (which lists commands from entry points) stays instant.
Every command takes ``--base-url``/``--api-key`` (or ``WORKBENCH_BASE_URL``/``WORKBENCH_API_KEY``)
and ``--format table|json``; ``json`` prints machine-readable output on stdout only.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _common(fn: F) -> F:
    """Connection and output options shared by every command."""
    fn = click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Output format.",
    )(fn)
    fn = click.option("--api-key", envvar="WORKBENCH_API_KEY", default=None, help="API key.")(fn)
    fn = click.option(
        "--base-url",
        envvar="WORKBENCH_BASE_URL",
        default=None,
        help="Server URL (default http://127.0.0.1:8000).",
    )(fn)
    fn = click.option(
        "--timeout", type=float, default=120.0, show_default=True, help="Seconds per request."
    )(fn)
    return fn


def _handle_errors(fn: F) -> F:
    """Turn client errors into a one-line CLI error (exit 1) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ._errors import WorkbenchError

        try:
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _client(base_url: str | None, api_key: str | None, timeout: float) -> Any:
    from ._client import Workbench

    return Workbench(base_url=base_url, api_key=api_key, timeout=timeout)


@contextmanager
def _spinner(message: str, fmt: str) -> Iterator[None]:
    """A spinner on stderr while waiting (never in JSON mode or when stderr is not a TTY)."""
    from rich.console import Console

    console = Console(stderr=True)
    if fmt == "json" or not console.is_terminal:
        yield
        return
    with console.status(message):
        yield


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    return obj


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(_to_jsonable(obj), indent=2, ensure_ascii=False))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console().print(table)


def _default_model(wb: Any, kind: str, model: str | None) -> str:
    if model:
        return model
    for info in wb.service.capabilities().models:
        if info.kind == kind:
            return str(info.name)
    raise click.UsageError(f"the server serves no {kind} model; pass --model")


# ---------------------------------------------------------------- commands


@click.command()
@_common
@_handle_errors
def health(base_url: str | None, api_key: str | None, timeout: float, fmt: str) -> None:
    """Show whether the server is alive and which models are ready."""
    with _client(base_url, api_key, timeout) as wb, _spinner("Checking health...", fmt):
        alive = wb.service.health()
    if fmt == "json":
        _emit_json(alive)
        return
    click.echo(f"status: {alive.status}")
    if alive.models:
        _table("Models", ["model", "status"], sorted(alive.models.items()))


@click.command()
@_common
@_handle_errors
def models(base_url: str | None, api_key: str | None, timeout: float, fmt: str) -> None:
    """List the served models and their limits."""
    with _client(base_url, api_key, timeout) as wb, _spinner("Listing models...", fmt):
        infos = wb.models.list()
    if fmt == "json":
        _emit_json(infos)
        return
    _table(
        "Served models",
        ["name", "kind", "status", "context", "max batch", "device", "base model"],
        [
            (m.name, m.kind, m.status, m.context_length, m.max_batch_size, m.device, m.base_model)
            for m in infos
        ],
    )


@click.command()
@click.argument("prompt")
@click.option("--model", "-m", default=None, help="Model name (default: the first text model).")
@click.option("--num-samples", "-n", type=int, default=1, show_default=True)
@click.option("--max-tokens", type=int, default=32, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--stream", is_flag=True, help="Print tokens as they are generated.")
@_common
@_handle_errors
def sample(
    prompt: str,
    model: str | None,
    num_samples: int,
    max_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    stream: bool,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    fmt: str,
) -> None:
    """Sample continuations of PROMPT from a text model."""
    params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
    if seed is not None:
        params["seed"] = seed
    with _client(base_url, api_key, timeout) as wb:
        model = _default_model(wb, "text", model)
        if stream:
            events = wb.sampling.stream(
                model, prompt, num_samples=num_samples, sampling_params=params
            )
            for ev in events:
                if fmt == "json":
                    click.echo(json.dumps({"event": "token", **ev.model_dump()}))
                elif ev.index == 0 or num_samples == 1:
                    click.echo(ev.text, nl=False)
            if fmt == "json":
                click.echo(json.dumps({"event": "done", **_to_jsonable(events.final)}))
            else:
                click.echo()
            return
        with _spinner(f"Sampling from {model}...", fmt):
            out = wb.sampling.sample(model, prompt, num_samples=num_samples, sampling_params=params)
    if fmt == "json":
        _emit_json(out)
        return
    _table(
        f"{model}: {out.prompt_tokens} prompt tokens",
        ["#", "text", "tokens", "finish"],
        [(i, s.text, len(s.tokens), s.finish_reason) for i, s in enumerate(out.sequences)],
    )


@click.command()
@click.argument("prompt")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="PNG path.")
@click.option("--model", "-m", default=None, help="Model name (default: the first image model).")
@click.option("--steps", type=int, default=None)
@click.option("--width", type=int, default=None)
@click.option("--height", type=int, default=None)
@click.option("--guidance-scale", type=float, default=None)
@click.option("--negative-prompt", default=None)
@click.option("--seed", type=int, default=None)
@click.option("-n", "n", type=int, default=1, show_default=True, help="How many images.")
@_common
@_handle_errors
def image(
    prompt: str,
    output: str,
    model: str | None,
    steps: int | None,
    width: int | None,
    height: int | None,
    guidance_scale: float | None,
    negative_prompt: str | None,
    seed: int | None,
    n: int,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    fmt: str,
) -> None:
    """Generate an image from PROMPT and save it as a PNG (OUT-1.png, OUT-2.png... for -n > 1)."""
    with _client(base_url, api_key, timeout) as wb:
        model = _default_model(wb, "image", model)
        with _spinner(f"Generating with {model}...", fmt):
            out = wb.images.generate(
                model,
                prompt,
                negative_prompt=negative_prompt,
                steps=steps,
                guidance_scale=guidance_scale,
                width=width,
                height=height,
                seed=seed,
                n=n,
            )
    path = Path(output)
    written: list[str] = []
    for i, img in enumerate(out.images):
        target = (
            path if len(out.images) == 1 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}")
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(img.b64_png))
        written.append(str(target))
    if fmt == "json":
        _emit_json({"files": written, "seed": out.seed, "model": model})
    else:
        for f in written:
            click.echo(f"wrote {f} (seed {out.seed})")


@click.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path(exists=True, dir_okay=False))
@click.argument("question")
@click.option("--model", "-m", default=None, help="Model name (default: the first vision model).")
@click.option("--max-tokens", type=int, default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--seed", type=int, default=None)
@_common
@_handle_errors
def vision(
    image_path: str,
    question: str,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    fmt: str,
) -> None:
    """Ask QUESTION about IMAGE with a vision-language model."""
    with _client(base_url, api_key, timeout) as wb:
        model = _default_model(wb, "vision", model)
        with _spinner(f"Asking {model}...", fmt):
            out = wb.vision.generate(
                model,
                Path(image_path),
                question,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
            )
    if fmt == "json":
        _emit_json(out)
    else:
        click.echo(out.text)


@click.group()
def runs() -> None:
    """Inspect LoRA training runs."""


def _run_rows(items: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [(r.id, r.base_model, r.rank, r.step, len(r.checkpoints), r.created_at) for r in items]


_RUN_COLUMNS = ["id", "base model", "rank", "step", "checkpoints", "created"]


@runs.command("list")
@_common
@_handle_errors
def runs_list(base_url: str | None, api_key: str | None, timeout: float, fmt: str) -> None:
    """List training runs."""
    with _client(base_url, api_key, timeout) as wb, _spinner("Listing runs...", fmt):
        items = wb.training.list_runs()
    if fmt == "json":
        _emit_json(items)
    else:
        _table("Training runs", _RUN_COLUMNS, _run_rows(items))


@runs.command("info")
@click.argument("run_id")
@_common
@_handle_errors
def runs_info(
    run_id: str, base_url: str | None, api_key: str | None, timeout: float, fmt: str
) -> None:
    """Show one training run."""
    with _client(base_url, api_key, timeout) as wb, _spinner("Fetching run...", fmt):
        run = wb.training.get_run(run_id)
    if fmt == "json":
        _emit_json(run)
    else:
        _table(f"Run {run.id}", _RUN_COLUMNS, _run_rows([run]))
        if run.checkpoints:
            click.echo("checkpoints: " + ", ".join(run.checkpoints))


@click.group()
def checkpoints() -> None:
    """Inspect checkpoints of training runs."""


@checkpoints.command("list")
@click.argument("run_id")
@_common
@_handle_errors
def checkpoints_list(
    run_id: str, base_url: str | None, api_key: str | None, timeout: float, fmt: str
) -> None:
    """List RUN_ID's checkpoints (their model_name can be sampled from)."""
    with _client(base_url, api_key, timeout) as wb, _spinner("Listing checkpoints...", fmt):
        items = wb.training.list_checkpoints(run_id)
    if fmt == "json":
        _emit_json(items)
    else:
        _table(
            f"Checkpoints of {run_id}",
            ["name", "kind", "step", "model name", "created"],
            [(c.name, c.kind, c.step, c.model_name, c.created_at) for c in items],
        )


__all__ = ["checkpoints", "health", "image", "models", "runs", "sample", "vision"]
