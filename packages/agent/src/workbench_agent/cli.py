"""``workbench agent chat``: talk to an agent server from the terminal.

Streaming output is printed as it arrives (rich), tool calls are shown while they run, and Ctrl-C
cancels the current run (the server stops the model and the tools) without leaving the program;
Ctrl-C or Ctrl-D at the prompt quits. Import-light: only click and rich load with ``--help``;
httpx and the SSE decoder load when a command runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

__all__ = ["ChatClient", "agent", "default_url"]


def default_url() -> str:
    """``WORKBENCH_AGENT_URL``, else ``WORKBENCH_BASE_URL`` + ``/agent``, else the dev server's."""
    explicit = os.environ.get("WORKBENCH_AGENT_URL")
    if explicit:
        return explicit.rstrip("/")
    base = os.environ.get("WORKBENCH_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    return base + "/agent"


class ChatClient:
    """One chat session against an agent server, run turn by turn.

    Args:
        url: the agent app's base URL (where ``/sessions`` lives).
        console: a rich console to render to.
        system: the session's system prompt.
        timeout: HTTP timeout in seconds (the event stream itself waits indefinitely).
    """

    def __init__(
        self, url: str, console: Any, *, system: str | None = None, timeout: float = 30.0
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.console = console
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, read=None))
        body = {"system": system} if system else {}
        resp = self.http.post("/sessions", json=body)
        self._check(resp)
        self.session_id: str = resp.json()["id"]
        self.last_seq = 0
        self._delta_open = False

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _check(resp: Any) -> None:
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                message = err["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text
            raise click.ClickException(f"{resp.status_code}: {message}")

    def turn(
        self, prompt: str, on_event: Callable[[str, dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Send ``prompt`` and render the run's events until it is done.

        Ctrl-C (KeyboardInterrupt) during the run asks the server to cancel it, then keeps
        rendering until the server reports the run done.

        Returns:
            The ``run_done`` event's data (status, final, steps, usage).
        """
        resp = self.http.post(f"/sessions/{self.session_id}/runs", json={"prompt": prompt})
        self._check(resp)
        run_id = resp.json()["id"]
        cancelled = False
        while True:
            try:
                done = self._follow(run_id, on_event)
                if done is not None:
                    return done
            except KeyboardInterrupt:
                if cancelled:
                    raise
                cancelled = True
                self._end_delta()
                self.console.print("[yellow]cancelling…[/yellow]")
                self.http.post(
                    f"/sessions/{self.session_id}/cancel",
                    json={"reason": "cancelled from the CLI (Ctrl-C)"},
                )

    def _follow(
        self, run_id: str, on_event: Callable[[str, dict[str, Any]], None] | None
    ) -> dict[str, Any] | None:
        """Stream events (resuming after the last one seen) until this run's ``run_done``."""
        from workbench_core.sse import SSEDecoder

        decoder = SSEDecoder()
        headers = {"Last-Event-ID": str(self.last_seq)}
        with self.http.stream(
            "GET", f"/sessions/{self.session_id}/events", headers=headers
        ) as resp:
            self._check(resp)
            for chunk in resp.iter_bytes():
                for ev in decoder.feed(chunk):
                    if not ev.data or ev.id is None:
                        continue  # heartbeats
                    self.last_seq = int(ev.id)
                    data = ev.json()
                    if not isinstance(data, dict) or data.get("run_id") not in (None, run_id):
                        continue
                    self.render(ev.event, data)
                    if on_event is not None:
                        on_event(ev.event, data)
                    if ev.event == "run_done":
                        return data
        return None

    def _end_delta(self) -> None:
        if self._delta_open:
            self.console.print()
            self._delta_open = False

    def render(self, type: str, data: dict[str, Any]) -> None:
        """Show one event: text as it streams, tools as they run, the outcome."""
        c = self.console
        if type == "llm_delta":
            c.print(data.get("text", ""), end="", markup=False, highlight=False, soft_wrap=True)
            self._delta_open = True
            return
        self._end_delta()
        if type == "tool_start":
            args = json.dumps(data.get("args", {}), ensure_ascii=False)
            c.print(f"[cyan]→ {data.get('name')}[/cyan] {args}", highlight=False)
        elif type == "tool_end":
            out = json.dumps(data.get("output"), ensure_ascii=False)
            if len(out) > 200:
                out = out[:200] + "…"
            c.print(f"[green]✓ {data.get('name')}[/green] ({data.get('duration_ms')} ms) {out}")
        elif type == "tool_error":
            c.print(f"[red]✗ {data.get('name')}[/red]: {data.get('error')}")
        elif type == "tool_cancelled":
            c.print(f"[yellow]⏹ {data.get('name')} cancelled[/yellow]")
        elif type == "observation" and data.get("error"):
            c.print(f"[magenta]! {data['error']}[/magenta]")
        elif type == "cancelled":
            c.print(f"[yellow]run cancelled: {data.get('reason')}[/yellow]")
        elif type == "error":
            c.print(f"[red]error: {data.get('message')}[/red]")
        elif type == "run_done":
            usage = data.get("usage") or {}
            c.print(
                f"[dim]{data.get('status')} · {data.get('steps')} steps · "
                f"{data.get('tool_calls')} tool calls · "
                f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tokens · "
                f"{data.get('duration_ms')} ms[/dim]"
            )


@click.group(name="agent")
def agent() -> None:
    """Chat with the workbench agent."""


@agent.command()
@click.option(
    "--url",
    default=None,
    help="Agent server URL (default: $WORKBENCH_AGENT_URL or $WORKBENCH_BASE_URL/agent).",
)
@click.option("--system", default=None, help="System prompt for the session.")
@click.option(
    "-p", "--prompt", "prompts", multiple=True, help="Send these prompts and exit (repeatable)."
)
def chat(url: str | None, system: str | None, prompts: tuple[str, ...]) -> None:
    """Interactive chat; Ctrl-C cancels the running answer, Ctrl-C/Ctrl-D at the prompt quits."""
    from rich.console import Console

    console = Console()
    target = url or default_url()
    try:
        client = ChatClient(target, console, system=system)
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"cannot reach the agent at {target}: {exc}") from exc
    console.print(f"[dim]session {client.session_id} at {target}[/dim]")
    failed = False
    try:
        if prompts:
            for p in prompts:
                console.print(f"[bold]you>[/bold] {p}")
                done = client.turn(p)
                failed = failed or done.get("status") != "done"
            if failed:
                raise SystemExit(1)
            return
        while True:
            try:
                line = console.input("[bold]you>[/bold] ")
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if not line.strip():
                continue
            if line.strip() in ("/quit", "/exit"):
                return
            client.turn(line)
    finally:
        client.close()
