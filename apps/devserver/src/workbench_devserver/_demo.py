"""``workbench demo``: every part of Workbench in one run, through the client SDK.

1. Make sure a dev server answers at ``--base-url`` (start ``workbench dev`` when none does).
2. Log the training pairs as a dataset artifact (tracker run ``prepare-data``).
3. Fine-tune the tiny served model with LoRA through ``ServiceClient``/``TrainingClient``; the
   loss goes live to the tracker (run ``lora-finetune``), which also records that it used the
   dataset and produced the checkpoint (lineage).
4. Sample from the checkpoint, generate an image, and log both to the run.
5. Ask the agent to compare the demo's runs.

Offline there is no capable LLM, and the demo does not fake one: step 3 teaches the tiny model,
through the workbench's own LoRA API, to answer the demo's question with the right tool call in
the agent's JSON action protocol, the agent is then put on that checkpoint, and the demo reports
plainly whether the model reproduced the call. With ``GEMINI_API_KEY`` set on the server the
agent runs on Gemini instead.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ._agent_llm import render_prompt

__all__ = ["DemoResult", "build_pairs", "run_demo"]

QUESTION = "Compare the runs of the {project} project."
TARGET_MODULES = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
]
FINAL = "I compared the demo runs with compare_runs; the comparison is the tool result above."


@dataclass
class DemoResult:
    """What the demo did, for the summary and for tests."""

    project: str
    data_run: str | None = None
    train_run: str | None = None
    checkpoint_model: str | None = None
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    reproduced: bool = False
    sample_text: str = ""
    image_path: str | None = None
    agent_llm: str | None = None
    agent_tool_called: bool = False
    agent_final: str | None = None
    agent_status: str | None = None
    notes: list[str] = field(default_factory=list)


def build_pairs(question: str, tool_call: dict[str, Any]) -> list[tuple[str, str]]:
    """(prompt, target) pairs in the agent's JSON action protocol, rendered as the agent's
    checkpoint LLM renders a conversation (so training and use see the same text)."""
    return [
        (render_prompt(question), json.dumps(tool_call, separators=(",", ":"))),
        (
            render_prompt(question, [str(tool_call["tool_name"])]),
            json.dumps({"type": "final", "final": FINAL}, separators=(",", ":")),
        ),
    ]


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _answers(base_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base_url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> list[str]:
    """Wait until no part of the server is still starting; returns the parts that are not ready.

    A part that failed or is not installed will not become ready by waiting, so the demo goes on
    with what there is and says what is missing.
    """
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the dev server exited with code {proc.returncode}")
        try:
            resp = httpx.get(f"{base_url}/devserver/status", timeout=10.0)
            if resp.status_code == 200:
                parts = resp.json()["components"]
                if not any(p["state"] == "starting" for p in parts):
                    return [f"{p['name']}: {p['state']}" for p in parts if p["state"] != "ready"]
                last = str({p["name"]: p["state"] for p in parts})
            else:  # not a dev server: a plain serving server
                resp = httpx.get(f"{base_url}/api/v1/readyz", timeout=10.0)
                if resp.status_code == 200:
                    return []
                last = resp.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"the dev server at {base_url} was not ready after {timeout:.0f}s: {last}")


def _start_server(base_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    parsed = urlparse(base_url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError(f"no server answers at {base_url}, and the demo only starts local ones")
    port = parsed.port or 80
    script = Path(sys.executable).with_name("workbench")
    cmd = [str(script)] if script.exists() else [shutil.which("workbench") or "workbench"]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*cmd, "dev", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _tool_call(base_url: str, project: str, run_ids: list[str]) -> dict[str, Any] | None:
    """The JSON action the demo teaches, with args that fit the agent's compare_runs schema."""
    import httpx

    resp = httpx.get(f"{base_url}/agent/tools", timeout=10.0)
    if resp.status_code != 200:
        return None
    tools = {t["name"]: t for t in resp.json().get("tools", [])}
    spec = tools.get("compare_runs")
    if spec is None:
        return None
    props = spec.get("parameters", {}).get("properties", {})
    required = set(spec.get("parameters", {}).get("required", []))
    args: dict[str, Any] = {}
    if "project" in props:
        args["project"] = project
    for key in ("run_ids", "runs", "ids"):
        if key in props and (key in required or "project" not in props):
            args[key] = run_ids
            break
    return {"type": "tool", "tool_name": "compare_runs", "args": args}


def _datum(tok: Any, prompt: str, target: str) -> dict[str, Any]:
    prompt_ids = tok.encode(prompt, add_special_tokens=True)
    target_ids = tok.encode(target, add_special_tokens=False)
    if tok.eos_token_id is not None:
        target_ids = [*target_ids, int(tok.eos_token_id)]
    ids = prompt_ids + target_ids
    weights = [0.0] * (len(prompt_ids) - 1) + [1.0] * len(target_ids)
    return {
        "model_input": {"chunks": [{"tokens": ids[:-1]}]},
        "loss_fn_inputs": {"target_tokens": ids[1:], "weights": weights},
    }


def _greedy(sampler: Any, prompt: str, max_tokens: int) -> str:
    out = sampler.sample(
        prompt, 1, {"max_tokens": max_tokens, "temperature": 0.0, "seed": 0}
    ).result()
    return str(out.sequences[0].text)


def _follow_agent(base_url: str, question: str, console: Any, result: DemoResult) -> None:
    """Start an agent run and print its events as they stream (SSE)."""
    import httpx

    from workbench_core.sse import SSEDecoder

    with httpx.Client(base_url=f"{base_url}/agent", timeout=60.0) as http:
        session = http.post("/sessions", json={}).json()
        sid = session["id"]
        run = http.post(f"/sessions/{sid}/runs", json={"prompt": question, "max_steps": 3})
        run.raise_for_status()
        decoder = SSEDecoder()
        with http.stream("GET", f"/sessions/{sid}/events", timeout=120.0) as stream:
            for chunk in stream.iter_bytes():
                for ev in decoder.feed(chunk):
                    try:
                        data = json.loads(ev.data) if ev.data else {}
                    except json.JSONDecodeError:
                        data = {}
                    payload = data if isinstance(data, dict) else {}
                    kind = ev.event
                    if kind == "model_output":
                        text = str(payload.get("text", ""))[:200]
                        console.print(f"  [dim]model:[/] {text}")
                    elif kind == "tool_start":
                        console.print(
                            f"  [cyan]tool[/] {payload.get('name')} {payload.get('args')}"
                        )
                        if payload.get("name") == "compare_runs":
                            result.agent_tool_called = True
                    elif kind in ("tool_end", "tool_error"):
                        console.print(f"  [cyan]{kind}[/] {str(payload)[:300]}")
                    elif kind == "observation":
                        console.print(f"  [dim]observation:[/] {str(payload)[:200]}")
                    elif kind == "final":
                        result.agent_final = str(payload.get("final", payload.get("text", "")))
                    elif kind == "run_done":
                        result.agent_status = str(payload.get("status"))
                        return


def run_demo(
    *,
    base_url: str,
    steps: int,
    project: str = "workbench-demo",
    keep_server: bool | None = None,
    ready_timeout: float = 600.0,
) -> int:
    """Run the demo; returns the process exit code (0 when every step ran)."""
    console = _console()
    base_url = base_url.rstrip("/")
    proc: subprocess.Popen[bytes] | None = None
    if not _answers(base_url):
        log_path = Path(tempfile.gettempdir()) / f"workbench-demo-server-{os.getpid()}.log"
        console.print(f"No server at {base_url}: starting [bold]workbench dev[/] (log {log_path})")
        proc = _start_server(base_url, log_path)
    try:
        with console.status("waiting for the dev server to be ready (models warm up)..."):
            missing = _wait_ready(base_url, proc, ready_timeout)
        for part in missing:
            console.print(f"[yellow]not available: {part}[/]")
        result = _run_steps(base_url, steps, project, console)
        _summary(result, base_url, console)
        if proc is not None:
            interactive = sys.stdin.isatty() if keep_server is None else keep_server
            if interactive:
                console.print(f"The dev server keeps running at {base_url}; Ctrl-C stops it.")
                try:
                    proc.wait()
                except KeyboardInterrupt:
                    pass
        return 0
    finally:
        if proc is not None:
            _stop(proc)


def _run_steps(base_url: str, steps: int, project: str, console: Any) -> DemoResult:
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    import workbench_tracker as wt
    from workbench_client import ServiceClient

    result = DemoResult(project=project)
    service = ServiceClient(base_url=base_url)
    caps = service.get_server_capabilities()
    served = [(m.name, str(m.kind)) for m in caps.models]
    trainable = {n for n, k in served if k == "training"}
    text_model = next((n for n, k in served if k == "text" and n in trainable), None)
    image_model = next((n for n, k in served if k == "image"), None)
    if text_model is None:
        raise RuntimeError(f"the server has no trainable text model (it serves {served})")
    question = QUESTION.format(project=project)

    # 1. two tracker runs: the dataset's and the fine-tune's (whose loss goes live to the UI)
    lr = 1e-2
    data_run = wt.init(project=project, name="prepare-data", tags=["demo"])
    run = wt.init(
        project=project,
        name="lora-finetune",
        config={
            "base_model": text_model,
            "rank": 16,
            "learning_rate": lr,
            "max_steps": steps,
            "target_modules": TARGET_MODULES,
        },
        tags=["demo"],
    )
    result.data_run = data_run.id
    call = _tool_call(base_url, project, [data_run.id, run.id])
    if call is None:
        result.notes.append("the agent has no compare_runs tool; the fine-tune teaches a guess")
        call = {
            "type": "tool",
            "tool_name": "compare_runs",
            "args": {"run_ids": [data_run.id, run.id]},
        }
    pairs = build_pairs(question, call)
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "pairs.jsonl"
        data_file.write_text(
            "".join(json.dumps({"prompt": p, "target": t}) + "\n" for p, t in pairs)
        )
        data_run.log_artifact(data_file, "demo-pairs", "dataset", metadata={"pairs": len(pairs)})
    data_run.log({"pairs": len(pairs)}, step=0)
    data_run.finish()

    result.train_run = run.id
    run.use_artifact("demo-pairs:latest")
    console.print(
        f"Tracker run [bold]{run.id}[/]: {base_url}/tracker/ (project {project}); "
        f"teaching {text_model} the action {pairs[0][1]}"
    )
    # The output head is in the targets on purpose: a tiny random model's head (std 0.02 over 64
    # dims) cannot make any token likely, so adapting only the body cannot memorise an action.
    trainer = service.create_lora_training_client(
        text_model, rank=16, seed=0, target_modules=TARGET_MODULES, tracker_run=run
    )
    tok = trainer.get_tokenizer()
    data = [_datum(tok, p, t) for p, t in pairs]
    max_tokens = max(len(tok.encode(t, add_special_tokens=False)) for _, t in pairs) + 4
    sampler = None
    check_every = 10  # a check is one save + two greedy samples: cheap next to 10 steps
    with Progress(
        TextColumn("[bold]fine-tune"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("train", total=steps, loss=float("nan"))
        for step in range(1, steps + 1):
            fb = trainer.forward_backward(data).result()
            trainer.optim_step({"learning_rate": lr}).result()
            result.losses.append(float(fb.loss))
            result.steps = step
            progress.update(task, completed=step, loss=float(fb.loss))
            if (step >= 40 and step % check_every == 0) or step == steps:
                sampler = trainer.save_weights_and_get_sampling_client(f"step-{step}")
                outputs = [_greedy(sampler, p, max_tokens) for p, _ in pairs]
                if all(o.strip() == t for o, (_, t) in zip(outputs, pairs, strict=True)):
                    result.reproduced = True
                    break
    assert sampler is not None
    result.checkpoint_model = sampler.model
    run.summary["reproduced_tool_call"] = result.reproduced
    run.summary["checkpoint_model"] = sampler.model

    # 3. the checkpoint, as an artifact the run produced
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "checkpoint.json"
        manifest.write_text(
            json.dumps(
                {
                    "server": base_url,
                    "training_run": trainer.run_id,
                    "model_name": sampler.model,
                    "base_model": text_model,
                    "steps": result.steps,
                    "final_loss": result.losses[-1],
                },
                indent=2,
            )
        )
        run.log_artifact(manifest, "demo-lora", "model", metadata={"model_name": sampler.model})

    # 4. sample from it, and draw
    result.sample_text = _greedy(sampler, pairs[0][0], max_tokens)
    console.print(f"Greedy sample from {sampler.model}: [bold]{result.sample_text}[/]")
    if result.reproduced:
        console.print("[green]The checkpoint reproduces the tool call.[/]")
    else:
        console.print(
            f"[yellow]After {result.steps} steps the tiny model does NOT reproduce the tool call "
            "exactly; the agent below will get what it really writes.[/]"
        )
    if image_model is not None:
        with httpx.Client(base_url=base_url, timeout=120.0) as http:
            resp = http.post(
                "/api/v1/images/generate",
                json={
                    "model": image_model,
                    "prompt": "a robot painting the sky",
                    "steps": 4,
                    "width": 64,
                    "height": 64,
                    "seed": 0,
                },
            )
            resp.raise_for_status()
            png = base64.b64decode(resp.json()["images"][0]["b64_png"])
        out = Path(tempfile.gettempdir()) / f"workbench-demo-{run.id}.png"
        out.write_bytes(png)
        result.image_path = str(out)
        run.log(
            {"image": wt.Image(str(out), caption="a robot painting the sky")}, step=result.steps
        )
        console.print(f"Image from {image_model}: {out}")
    run.finish()

    # 5. the agent
    with httpx.Client(base_url=base_url, timeout=30.0) as http:
        current = http.get("/devserver/agent/llm")
        desc = current.json().get("llm") if current.status_code == 200 else None
        if desc and not str(desc).startswith("Gemini"):
            switched = http.post("/devserver/agent/llm", json={"model": sampler.model})
            desc = switched.json().get("llm") if switched.status_code == 200 else desc
    result.agent_llm = desc
    if desc is None:
        result.notes.append("the agent is not available on this server")
        return result
    console.print(f"Asking the agent ({desc}): [bold]{question}[/]")
    _follow_agent(base_url, question, console, result)
    return result


def _summary(result: DemoResult, base_url: str, console: Any) -> None:
    from rich.table import Table

    table = Table(title="Workbench demo")
    table.add_column("what")
    table.add_column("result")
    table.add_row("tracker", f"{base_url}/tracker/ (project {result.project})")
    table.add_row("fine-tune run", str(result.train_run))
    loss = f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}" if result.losses else "-"
    table.add_row("steps / loss", f"{result.steps} / {loss}")
    table.add_row("checkpoint model", str(result.checkpoint_model))
    table.add_row("reproduces the tool call", "yes" if result.reproduced else "NO")
    table.add_row("image", str(result.image_path))
    table.add_row("agent LLM", str(result.agent_llm))
    table.add_row("agent called compare_runs", "yes" if result.agent_tool_called else "no")
    table.add_row("agent status / final", f"{result.agent_status} / {result.agent_final}")
    for note in result.notes:
        table.add_row("note", note)
    console.print(table)
    # One unwrapped machine-readable line (rich would wrap it) for scripts and tests.
    print(f"DEMO_RESULT {json.dumps(result.__dict__)}", flush=True)
