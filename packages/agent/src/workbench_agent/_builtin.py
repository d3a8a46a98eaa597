"""Built-in tools that reach the rest of the workbench: serving through the client SDK (over
HTTP, exactly as across machines) and the tracker through its read API.

    generate_image, describe_image, sample_text     serving via workbench-client
    start_finetune, finetune_status                 LoRA training via the client; losses are
                                                    logged to a tracker run as they happen
    search_runs, get_metrics, compare_runs          the tracker's read API (``wt.Api``)

Images are written to files under ``WORKBENCH_HOME/agent/images`` and tools return their paths:
base64 PNGs would flood the model's context.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._tools import ToolRegistry, ToolSpec, tool

__all__ = ["FinetuneJob", "WorkbenchTools", "builtin_registry"]


@dataclass
class FinetuneJob:
    """A fine-tune started by ``start_finetune``, running in the background."""

    id: str
    base_model: str
    steps: int
    status: str = "starting"
    step: int = 0
    losses: list[float] = field(default_factory=list)
    training_run_id: str | None = None
    tracker_run_id: str | None = None
    checkpoint: str | None = None
    model_name: str | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "status": self.status,
            "base_model": self.base_model,
            "step": self.step,
            "steps": self.steps,
            "losses": [round(x, 6) for x in self.losses],
            "training_run_id": self.training_run_id,
            "tracker_run_id": self.tracker_run_id,
            "checkpoint": self.checkpoint,
            "model_name": self.model_name,
            "error": self.error,
        }


def _is_file(name: str) -> bool:
    try:
        return len(name) < 4096 and Path(name).is_file()
    except (OSError, ValueError):
        return False


def _finite(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


class WorkbenchTools:
    """The state the built-in tools share: where serving is, which tracker store, running jobs.

    Args:
        base_url: the workbench server (default ``WORKBENCH_BASE_URL``).
        api_key: default ``WORKBENCH_API_KEY``.
        tracker_store: a tracker ``Store`` or URL (default: the tracker's default store).
        image_dir: where generated images are written.
        project: tracker project for fine-tunes.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        tracker_store: Any = None,
        image_dir: Path | None = None,
        project: str = "agent-finetunes",
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.tracker_store = tracker_store
        self._image_dir = image_dir
        self.project = project
        self.jobs: dict[str, FinetuneJob] = {}
        self._models: dict[str, str] = {}

    async def aclose(self) -> None:
        """Cancel fine-tunes still running (server shutdown); their tracker runs end failed."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # plumbing ---------------------------------------------------------------------------------

    def client(self) -> Any:
        from workbench_client import AsyncWorkbench

        return AsyncWorkbench(base_url=self.base_url, api_key=self.api_key)

    def image_dir(self) -> Path:
        if self._image_dir is None:
            from workbench_core.config import workbench_path

            self._image_dir = workbench_path("agent", "images")
        self._image_dir.mkdir(parents=True, exist_ok=True)
        return self._image_dir

    async def model_of(self, wb: Any, kind: str, given: str | None = None) -> str:
        """The served model of ``kind`` (text, image, vision, training), asked once."""
        if given:
            return given
        if kind not in self._models:
            for info in await wb.models.list():
                self._models.setdefault(str(info.kind), str(info.name))
        try:
            return self._models[kind]
        except KeyError:
            raise ValueError(f"the server serves no {kind} model") from None

    def api(self) -> Any:
        import workbench_tracker as wt

        return wt.Api(self.tracker_store)

    # tools ------------------------------------------------------------------------------------

    def specs(self) -> list[ToolSpec]:
        """Every built-in tool, bound to this state."""
        ws = self

        @tool(timeout=300)
        async def generate_image(
            prompt: str,
            width: int = 32,
            height: int = 32,
            steps: int = 4,
            seed: int | None = None,
            model: str | None = None,
        ) -> dict[str, Any]:
            """Generate an image from a text prompt with the served diffusion model.

            Args:
                prompt: what to draw.
                width: pixels, a multiple of 8.
                height: pixels, a multiple of 8.
                steps: denoising steps.
                seed: for a reproducible image.
                model: served image model; default: the first one.
            """
            async with ws.client() as wb:
                name = await ws.model_of(wb, "image", model)
                out = await wb.images.generate(
                    name, prompt, width=width, height=height, steps=steps, seed=seed, n=1
                )
            png = base64.b64decode(out.images[0].b64_png)
            path = ws.image_dir() / f"{hashlib.sha256(png).hexdigest()[:16]}.png"
            await asyncio.to_thread(path.write_bytes, png)
            return {"path": str(path), "width": width, "height": height, "seed": out.seed}

        @tool(timeout=300)
        async def describe_image(
            image: str,
            question: str = "Describe this image.",
            max_tokens: int = 32,
            model: str | None = None,
        ) -> dict[str, Any]:
            """Describe an image (a file path, base64 PNG or data URL) with the vision model.

            Args:
                image: path of an image file (e.g. from generate_image), base64 or a data URL.
                question: what to ask about the image.
                max_tokens: length of the answer.
                model: served vision model; default: the first one.
            """
            source: Any = image
            if not image.startswith("data:") and await asyncio.to_thread(_is_file, image):
                source = Path(image)
            async with ws.client() as wb:
                name = await ws.model_of(wb, "vision", model)
                out = await wb.vision.generate(
                    name, source, question, max_tokens=max_tokens, temperature=0.0, seed=0
                )
            return {"text": out.text, "finish_reason": out.finish_reason}

        @tool(timeout=300)
        async def sample_text(
            prompt: str,
            max_tokens: int = 32,
            temperature: float = 0.7,
            seed: int | None = None,
            model: str | None = None,
        ) -> dict[str, Any]:
            """Continue a text prompt with a served language model (a base or fine-tuned one).

            Args:
                prompt: the text to continue.
                max_tokens: tokens to generate.
                temperature: 0 for greedy.
                seed: for reproducible sampling.
                model: served model name, e.g. a fine-tune's model_name; default: the first.
            """
            params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
            if seed is not None:
                params["seed"] = seed
            async with ws.client() as wb:
                name = await ws.model_of(wb, "text", model)
                out = await wb.sampling.sample(name, prompt, sampling_params=params)
            seq = out.sequences[0]
            return {"model": name, "text": seq.text, "finish_reason": seq.finish_reason}

        @tool(timeout=60)
        async def start_finetune(
            examples: list[str],
            steps: int = 5,
            learning_rate: float = 1e-3,
            rank: int = 4,
            base_model: str | None = None,
        ) -> dict[str, Any]:
            """Start a LoRA fine-tune on example texts; it runs in the background.

            Poll it with finetune_status. Each step's loss is logged to the experiment tracker.

            Args:
                examples: training texts (at least one).
                steps: optimizer steps.
                learning_rate: Adam learning rate.
                rank: LoRA rank.
                base_model: served base model; default: the first trainable one.
            """
            if not examples or not all(e.strip() for e in examples):
                raise ValueError("examples: give at least one non-empty text")
            if not 1 <= steps <= 1000:
                raise ValueError("steps: must be between 1 and 1000")
            async with ws.client() as wb:
                try:
                    base = await ws.model_of(wb, "training", base_model)
                except ValueError:
                    base = await ws.model_of(wb, "text", base_model)
            job = FinetuneJob(id="ft_" + uuid.uuid4().hex[:12], base_model=base, steps=steps)
            ws.jobs[job.id] = job
            job.task = asyncio.create_task(ws._finetune(job, examples, learning_rate, rank))
            # Let the job create its training run so the caller gets its id.
            for _ in range(200):
                if job.training_run_id or job.status in ("failed", "done"):
                    break
                await asyncio.sleep(0.01)
            return job.to_dict()

        @tool(timeout=10)
        def finetune_status(job_id: str) -> dict[str, Any]:
            """The progress of a fine-tune started with start_finetune.

            Args:
                job_id: the job_id start_finetune returned.
            """
            job = ws.jobs.get(job_id)
            if job is None:
                known = ", ".join(ws.jobs) or "none"
                raise ValueError(f"job_id: no fine-tune {job_id!r} (known: {known})")
            return job.to_dict()

        @tool(timeout=30)
        def search_runs(
            project: str | None = None,
            tags: list[str] | None = None,
            status: str | None = None,
            limit: int = 10,
        ) -> list[dict[str, Any]]:
            """Find experiment runs in the tracker, newest first.

            Args:
                project: only this project.
                tags: only runs with all these tags.
                status: running, finished or failed.
                limit: at most this many runs.
            """
            runs = ws.api().runs(project, tags=tags or (), status=status, limit=max(1, limit))
            return [
                {
                    "id": r.id,
                    "name": r.name,
                    "project": r.project,
                    "status": r.status,
                    "tags": r.tags,
                    "summary": r.summary,
                    "created_at": r.created_at.isoformat() if r.created_at else None,
                }
                for r in runs
            ]

        @tool(timeout=30)
        def get_metrics(
            run_id: str, keys: list[str] | None = None, points: int = 50
        ) -> dict[str, Any]:
            """A run's metric series (downsampled), for reading trends.

            Args:
                run_id: the tracker run id.
                keys: metric names; default: all of the run's metrics.
                points: at most this many points per series.
            """
            run = ws.api().run(run_id)
            wanted = keys or run.metric_keys()
            series: dict[str, Any] = {}
            for key in wanted:
                steps, values = run.metric(key, points=max(2, points))
                series[key] = {"steps": list(steps), "values": _finite(list(values))}
            return {"run_id": run.id, "name": run.name, "metrics": series}

        @tool(timeout=30)
        def compare_runs(run_ids: list[str], keys: list[str] | None = None) -> dict[str, Any]:
            """Compare runs side by side: differing config, and each metric's last and best.

            Args:
                run_ids: two or more tracker run ids.
                keys: metrics to compare; default: those every run has.
            """
            if len(run_ids) < 2:
                raise ValueError("run_ids: give at least two runs to compare")
            api = ws.api()
            runs = [api.run(r) for r in run_ids]
            if keys is None:
                common = set(runs[0].metric_keys())
                for r in runs[1:]:
                    common &= set(r.metric_keys())
                keys = sorted(common)
            config_keys = sorted({k for r in runs for k in r.config})
            differing = {
                k: {r.id: r.config.get(k) for r in runs}
                for k in config_keys
                if len({repr(r.config.get(k)) for r in runs}) > 1
            }
            metrics: dict[str, Any] = {}
            for key in keys:
                row: dict[str, Any] = {}
                for r in runs:
                    _, values = r.metric(key)
                    finite = [v for v in values if math.isfinite(v)]
                    row[r.id] = {
                        "last": finite[-1] if finite else None,
                        "min": min(finite) if finite else None,
                        "max": max(finite) if finite else None,
                    }
                metrics[key] = row
            return {
                "runs": [{"id": r.id, "name": r.name, "status": r.status} for r in runs],
                "config_differences": differing,
                "metrics": metrics,
            }

        return [
            generate_image,
            describe_image,
            sample_text,
            start_finetune,
            finetune_status,
            search_runs,
            get_metrics,
            compare_runs,
        ]

    async def _finetune(
        self, job: FinetuneJob, examples: list[str], learning_rate: float, rank: int
    ) -> None:
        """Run the fine-tune: tokenize, create a run, step, log each loss, save a checkpoint."""
        tracker_run: Any = None
        try:
            from workbench_client.lib import Tokenizer

            async with self.client() as wb:
                tok = Tokenizer(await wb.models.tokenizer(job.base_model))
                data = []
                for text in examples:
                    ids = tok.encode(text)
                    if len(ids) < 2:
                        raise ValueError(f"examples: {text!r} is too short to train on")
                    data.append(
                        {
                            "model_input": {
                                "chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]
                            },
                            "loss_fn_inputs": {"target_tokens": ids[1:]},
                        }
                    )
                run = await wb.training.create_run(job.base_model, rank=rank, seed=0)
                job.training_run_id = run.id
                tracker_run = await asyncio.to_thread(
                    self._start_tracker_run, job, learning_rate, rank
                )
                job.status = "running"
                for step in range(1, job.steps + 1):
                    fb = await wb.training.forward_backward(run.id, data)
                    await wb.training.optim_step(run.id, {"learning_rate": learning_rate})
                    job.step = step
                    job.losses.append(float(fb.loss))
                    if tracker_run is not None:
                        tracker_run.log({"loss": float(fb.loss)}, step=step)
                ckpt = await wb.training.save_checkpoint(run.id, f"step-{job.steps}")
                job.checkpoint = ckpt.name
                job.model_name = ckpt.model_name
            job.status = "done"
            if tracker_run is not None:
                tracker_run.summary["final_loss"] = job.losses[-1]
                tracker_run.summary["model_name"] = job.model_name
                await asyncio.to_thread(tracker_run.finish)
        except asyncio.CancelledError:
            job.status = "cancelled"
            if tracker_run is not None:
                await asyncio.to_thread(tracker_run.finish, "failed", error="cancelled")
            raise
        except Exception as exc:
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            if tracker_run is not None:
                await asyncio.to_thread(tracker_run.finish, "failed", error=job.error)

    def _start_tracker_run(self, job: FinetuneJob, learning_rate: float, rank: int) -> Any:
        try:
            import workbench_tracker as wt

            run = wt.init(
                project=self.project,
                name=job.id,
                config={
                    "base_model": job.base_model,
                    "steps": job.steps,
                    "learning_rate": learning_rate,
                    "rank": rank,
                    "training_run_id": job.training_run_id,
                },
                tags=["agent", "finetune"],
                store=self.tracker_store,
                capture_env=False,
            )
        except ImportError:
            return None
        job.tracker_run_id = run.id
        return run


def builtin_registry(
    base_url: str | None = None, *, tracker_store: Any = None, **kwargs: Any
) -> ToolRegistry:
    """A registry holding every built-in workbench tool.

    Args:
        base_url: the workbench server the tools call (default ``WORKBENCH_BASE_URL``).
        tracker_store: the tracker store or URL the tracker tools read (default: the tracker's).
        **kwargs: more ``WorkbenchTools`` options.
    """
    return ToolRegistry(WorkbenchTools(base_url, tracker_store=tracker_store, **kwargs).specs())
