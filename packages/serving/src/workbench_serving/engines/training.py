"""Tinker-style LoRA training runs on one shared copy of a text model's base weights.

Every run is one peft LoRA adapter on the ``PeftModel`` that the text engine hosts, so N runs
cost N adapters, not N models, and the text engine samples from any run (``adapter=run_id``)
or saved checkpoint (``adapter="<run_id>:<checkpoint>"``) by name. Each call activates its
run's adapter with ``set_adapter`` while holding the text engine's lock, so a training call and
a sampling call never switch adapters under each other even from two threads.

The training loop is the client's: ``forward_backward`` accumulates gradients of the weighted
cross-entropy over the given data, ``optim_step`` applies AdamW to that run's LoRA parameters
and clears them. Checkpoints live under ``WORKBENCH_HOME/checkpoints/<run_id>/<name>``:

- ``weights``: ``adapter_model.safetensors`` + ``adapter_config.json`` (a standard peft
  adapter directory, loadable with ``PeftModel.from_pretrained``);
- ``state``: the same plus ``optimizer.pt`` (AdamW state) and the step number, so training
  resumes exactly.

Each checkpoint is written to a temporary directory and renamed into place, so a crash never
leaves a half-written checkpoint under its name.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench_serving.engines.base import (
    AdamParams,
    CheckpointInfo,
    EngineError,
    EngineKind,
    ForwardBackwardResult,
    PretrainedEngine,
    RunInfo,
    TrainingDatum,
    TrainingOp,
)
from workbench_serving.engines.text import TextEngine

if TYPE_CHECKING:
    import torch

__all__ = ["TrainingEngine", "checkpoint_model_name", "checkpoints_dir"]

MAX_RANK = 256
LOSS_FNS = ("cross_entropy", "importance_sampling", "ppo")
PPO_CLIP = 0.2
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_META = "workbench_checkpoint.json"


def checkpoints_dir() -> Path:
    """``WORKBENCH_HOME/checkpoints``: where every run's checkpoints are saved."""
    from workbench_serving.presets import _workbench_home

    return _workbench_home() / "checkpoints"


def checkpoint_model_name(run_id: str, name: str) -> str:
    """The adapter name that samples from checkpoint ``name`` of run ``run_id``."""
    return f"{run_id}:{name}"


def read_checkpoint(path: Path) -> CheckpointInfo | None:
    """The checkpoint saved in ``path``, or ``None`` if none is complete there."""
    meta_path = path / _META
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    return CheckpointInfo(
        run_id=meta["run_id"],
        name=meta["name"],
        kind=meta["kind"],
        step=int(meta["step"]),
        path=str(path),
        created_at=float(meta["created_at"]),
        model_name=checkpoint_model_name(meta["run_id"], meta["name"]),
    )


@dataclass
class _Run:
    info: RunInfo
    adapter: str  # peft's adapter name
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    pending_tokens: int = 0  # weighted positions since the last optim_step
    extra: dict[str, Any] = field(default_factory=dict)


def _as_datum(raw: Any, index: int) -> TrainingDatum:
    if isinstance(raw, TrainingDatum):
        return raw
    if isinstance(raw, dict):
        try:
            logprobs, advantages = raw.get("logprobs"), raw.get("advantages")
            return TrainingDatum(
                tokens=list(raw["tokens"]),
                target_tokens=list(raw["target_tokens"]),
                weights=[float(w) for w in raw["weights"]],
                logprobs=[float(x) for x in logprobs] if logprobs is not None else None,
                advantages=[float(x) for x in advantages] if advantages is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(
                f"data[{index}] needs tokens, target_tokens and weights: {exc}",
                param=f"data[{index}]",
            ) from exc
    raise EngineError(f"data[{index}] is not a datum", param=f"data[{index}]")


def _as_adam(raw: Any) -> AdamParams:
    if isinstance(raw, AdamParams):
        return raw
    if isinstance(raw, dict):
        try:
            return AdamParams(**raw)
        except TypeError as exc:
            raise EngineError(f"bad adam_params: {exc}", param="adam_params") from exc
    raise EngineError("adam_params must be an object", param="adam_params")


class TrainingEngine(PretrainedEngine):
    """LoRA training runs on a text model, driven like the other engines through ``run_batch``.

    Args:
        name: the base model's name (also its preset name / path unless ``path`` is given).
        path: a preset name, local directory or hub id.
        device: default CUDA if available.
        dtype: default bf16 on CUDA, fp32 on CPU. LoRA parameters train in this dtype.
        text_engine: the served ``TextEngine`` whose base weights the runs share; when omitted
            the engine shares the most recently created ``TextEngine`` of the same model, or
            makes its own.
        root: checkpoints directory (default ``WORKBENCH_HOME/checkpoints``).
    """

    kind: EngineKind = "training"

    def __init__(
        self,
        name: str,
        path: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        *,
        text_engine: TextEngine | None = None,
        root: Path | None = None,
    ) -> None:
        super().__init__(name, path, device, dtype)
        self._text = text_engine
        self._root = root
        self._runs: dict[str, _Run] = {}

    # ------------------------------------------------------------ loading

    @property
    def text(self) -> TextEngine:
        """The text engine hosting the shared base weights and every run's adapter."""
        if self._text is None:
            shared = TextEngine.find_shared(self.source, self._device_arg, self._dtype_arg)
            self._text = shared or TextEngine(
                self.name, self.source, device=self._device_arg, dtype=self._dtype_arg
            )
        return self._text

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else checkpoints_dir()

    def load(self) -> None:
        """Load the base model (through the text engine); idempotent."""
        self.text.load()

    def describe(self) -> dict[str, Any]:
        base = self.text.describe()
        return {
            "kind": self.kind,
            "name": self.name,
            "base_model": self.name,
            "context_length": base["context_length"],
            "device": base["device"],
            "dtype": base["dtype"],
            "max_rank": MAX_RANK,
            "loss_fns": list(LOSS_FNS),
            "runs": len(self._runs),
        }

    # ------------------------------------------------------------ scheduler contract

    def batch_key(self, op: TrainingOp) -> Hashable:
        """Ops of one run may share a batch; they still run one by one, in order."""
        return ("training", op.run_id)

    def run_batch(self, ops: Sequence[TrainingOp]) -> list[Any]:
        """Run each op in order; one result or one exception per op."""
        out: list[Any] = []
        for op in ops:
            try:
                out.append(self.run_op(op))
            except EngineError as exc:
                out.append(exc)
            except (ValueError, TypeError) as exc:
                out.append(EngineError(f"bad {op.kind} request: {exc}", param=op.kind))
        return out

    def run_op(self, op: TrainingOp) -> Any:
        """Dispatch one ``TrainingOp`` to the method of the same name."""
        payload = dict(op.payload)
        if op.kind == "create_run":
            return self.create_run(**payload)
        if op.kind == "list_runs":
            return self.list_runs()
        run_id = op.run_id
        if run_id is None:
            raise EngineError(f"{op.kind} needs a run_id", param="run_id")
        if op.kind == "forward_backward":
            return self.forward_backward(run_id, **payload)
        if op.kind == "optim_step":
            return self.optim_step(run_id, **payload)
        if op.kind == "save_checkpoint":
            return self.save_checkpoint(run_id, **payload)
        if op.kind == "load_checkpoint":
            return self.load_checkpoint(run_id, **payload)
        if op.kind == "list_checkpoints":
            return self.list_checkpoints(run_id)
        if op.kind == "register_sampler":
            return self.register_sampler(run_id, **payload)
        if op.kind == "get_run":
            return self.get_run(run_id)
        if op.kind == "delete_run":
            return self.delete_run(run_id)
        raise EngineError(f"unknown training op {op.kind!r}", param="kind")

    # ------------------------------------------------------------ runs

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise EngineError(f"unknown training run {run_id!r}", param="run_id", status=404)
        return run

    def create_run(
        self,
        rank: int = 8,
        seed: int = 0,
        target_modules: list[str] | None = None,
        alpha: int | None = None,
        base_model: str | None = None,
    ) -> str:
        """Add a fresh LoRA adapter on the shared base; returns the new run's id.

        ``target_modules=None`` adapts every linear layer but the output head (peft's
        ``"all-linear"``). ``alpha`` defaults to ``rank`` (LoRA scale 1). The adapter's
        ``B`` matrix starts at zero, so a new run samples exactly like the base model.
        """
        import torch
        from peft import LoraConfig

        if base_model is not None and base_model not in (self.name, self.source):
            raise EngineError(
                f"this server trains on {self.name!r}, not {base_model!r}", param="base_model"
            )
        if not isinstance(rank, int) or not 1 <= rank <= MAX_RANK:
            raise EngineError(f"rank must be an integer in [1, {MAX_RANK}]", param="rank")
        if not isinstance(seed, int) or seed < 0:
            raise EngineError("seed must be a non-negative integer", param="seed")
        if target_modules is not None and (
            not target_modules or any(not isinstance(m, str) or not m for m in target_modules)
        ):
            raise EngineError("target_modules must be non-empty names", param="target_modules")
        text = self.text
        text.load()
        run_id = "run_" + secrets.token_hex(6)
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            lora_dropout=0.0,
            target_modules=list(target_modules) if target_modules else "all-linear",
            bias="none",
        )
        devices = [text.device] if text.device.type == "cuda" else []
        with text.lock:
            try:
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(seed)
                    internal = text.add_adapter(run_id, config)
            except ValueError as exc:  # peft: no module matched target_modules
                raise EngineError(str(exc), param="target_modules") from exc
            named = [
                (n, p)
                for n, p in text.model.named_parameters()
                if "lora_" in n and f".{internal}." in f"{n}."
            ]
            params = [p for _, p in sorted(named, key=lambda np: np[0])]
            for p in params:
                p.requires_grad_(True)
            optimizer = torch.optim.AdamW(params, lr=1e-4)
        info = RunInfo(
            run_id=run_id,
            base_model=self.name,
            rank=rank,
            seed=seed,
            target_modules=list(target_modules) if target_modules else ["all-linear"],
            step=0,
            created_at=time.time(),
        )
        self._runs[run_id] = _Run(info=info, adapter=internal, params=params, optimizer=optimizer)
        return run_id

    def get_run(self, run_id: str) -> RunInfo:
        return self._run(run_id).info

    def list_runs(self) -> list[RunInfo]:
        return [r.info for r in self._runs.values()]

    def delete_run(self, run_id: str) -> RunInfo:
        """Drop a run's adapter and optimizer (its saved checkpoints stay on disk)."""
        run = self._run(run_id)
        with self.text.lock:
            self.text.remove_adapter(run_id)
            del self._runs[run_id]
        return run.info

    def run_parameters(self, run_id: str) -> list[torch.nn.Parameter]:
        """The LoRA parameters a run trains (sorted by name)."""
        return list(self._run(run_id).params)

    # ------------------------------------------------------------ training

    def _validate_data(
        self, data: Sequence[Any], loss_fn: str = "cross_entropy"
    ) -> list[TrainingDatum]:
        if not isinstance(data, list | tuple) or not data:
            raise EngineError("data must be a non-empty list of datums", param="data")
        text = self.text
        vocab, ctx = text.vocab_size, text.context_length
        out: list[TrainingDatum] = []
        for i, raw in enumerate(data):
            d = _as_datum(raw, i)
            n = len(d.tokens)
            if n == 0:
                raise EngineError(f"data[{i}].tokens is empty", param=f"data[{i}].tokens")
            if n > ctx:
                raise EngineError(
                    f"data[{i}] has {n} tokens, more than the context length {ctx}",
                    param=f"data[{i}].tokens",
                )
            if len(d.target_tokens) != n or len(d.weights) != n:
                raise EngineError(
                    f"data[{i}]: tokens, target_tokens and weights must have equal lengths "
                    f"({n}, {len(d.target_tokens)}, {len(d.weights)})",
                    param=f"data[{i}].target_tokens",
                )
            for field_name in ("tokens", "target_tokens"):
                for t in getattr(d, field_name):
                    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab:
                        raise EngineError(
                            f"data[{i}].{field_name} holds token id {t!r} outside [0, {vocab})",
                            param=f"data[{i}].{field_name}",
                        )
            if any(not math.isfinite(w) or w < 0 for w in d.weights):
                raise EngineError(
                    f"data[{i}].weights must be finite and >= 0", param=f"data[{i}].weights"
                )
            if loss_fn != "cross_entropy":
                for field_name in ("logprobs", "advantages"):
                    values = getattr(d, field_name)
                    if values is None or len(values) != n:
                        raise EngineError(
                            f"loss_fn {loss_fn!r} needs data[{i}].{field_name} with {n} entries",
                            param=f"data[{i}].{field_name}",
                        )
                    if any(not math.isfinite(v) for v in values):
                        raise EngineError(
                            f"data[{i}].{field_name} must be finite",
                            param=f"data[{i}].{field_name}",
                        )
            out.append(d)
        if sum(sum(d.weights) for d in out) <= 0:
            raise EngineError("the weights of data sum to zero", param="data")
        return out

    def forward_backward(
        self, run_id: str, data: Sequence[Any], loss_fn: str = "cross_entropy"
    ) -> ForwardBackwardResult:
        """Accumulate gradients of ``loss_fn`` over ``data`` for run ``run_id``.

        Every loss is a weighted mean over all positions of all datums,
        ``sum_i w_i * loss_i / sum_i w_i``, with ``lp_i = log p(target_i | tokens[: i + 1])``:

        - ``cross_entropy``: ``loss_i = -lp_i`` (supervised fine-tuning).
        - ``importance_sampling``: ``loss_i = -exp(lp_i - logprobs_i) * advantages_i``, the
          off-policy REINFORCE estimator with the sampler's ``logprobs``.
        - ``ppo``: ``loss_i = -min(r_i * A_i, clip(r_i, 1 - 0.2, 1 + 0.2) * A_i)`` with
          ``r_i = exp(lp_i - logprobs_i)``.

        Gradients add up across calls until ``optim_step``.

        Returns:
            The loss and, per datum, the logprob of each target token (before the update).
        """
        import torch

        run = self._run(run_id)
        if loss_fn not in LOSS_FNS:
            raise EngineError(
                f"loss_fn must be one of {', '.join(LOSS_FNS)}, not {loss_fn!r}", param="loss_fn"
            )
        datums = self._validate_data(data, loss_fn)
        text = self.text
        with text.lock, torch.enable_grad(), text.using_adapter(run_id) as model:
            lp, lengths = text.score_tensor(
                model, [d.tokens for d in datums], [d.target_tokens for d in datums]
            )

            def padded(rows: list[list[float]]) -> torch.Tensor:
                out = torch.zeros_like(lp)
                for b, row in enumerate(rows):
                    out[b, : len(row)] = torch.tensor(row, dtype=lp.dtype)
                return out

            weights = padded([d.weights for d in datums])
            if loss_fn == "cross_entropy":
                per_token = -lp
            else:
                old = padded([d.logprobs or [] for d in datums])
                adv = padded([d.advantages or [] for d in datums])
                ratio = torch.exp(lp - old)
                objective = ratio * adv
                if loss_fn == "ppo":
                    clipped = torch.clamp(ratio, 1.0 - PPO_CLIP, 1.0 + PPO_CLIP) * adv
                    objective = torch.minimum(objective, clipped)
                per_token = -objective
            loss = (per_token * weights).sum() / weights.sum()
            loss.backward()
        counted = int((weights > 0).sum())
        run.pending_tokens += counted
        return ForwardBackwardResult(
            loss=float(loss.detach()),
            logprobs=[lp[b, :n].detach().tolist() for b, n in enumerate(lengths)],
            num_tokens=counted,
        )

    def optim_step(self, run_id: str, adam_params: Any = None) -> int:
        """Apply one AdamW step to the run's LoRA parameters; returns the new step number."""
        import torch

        run = self._run(run_id)
        adam = _as_adam(adam_params if adam_params is not None else AdamParams())
        checks = {
            "learning_rate": adam.learning_rate >= 0,
            "beta1": 0 <= adam.beta1 < 1,
            "beta2": 0 <= adam.beta2 < 1,
            "eps": adam.eps > 0,
            "weight_decay": adam.weight_decay >= 0,
            "grad_clip_norm": adam.grad_clip_norm >= 0,
        }
        for key, ok in checks.items():
            if not ok or not math.isfinite(getattr(adam, key)):
                raise EngineError(f"adam_params.{key} is out of range", param=f"adam_params.{key}")
        with self.text.lock:
            for group in run.optimizer.param_groups:
                group["lr"] = adam.learning_rate
                group["betas"] = (adam.beta1, adam.beta2)
                group["eps"] = adam.eps
                group["weight_decay"] = adam.weight_decay
            if adam.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(run.params, adam.grad_clip_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        run.pending_tokens = 0
        run.info.step += 1
        return run.info.step

    # ------------------------------------------------------------ checkpoints

    def _ckpt_dir(self, run_id: str, name: str) -> Path:
        return self.root / run_id / name

    def save_checkpoint(self, run_id: str, name: str, kind: str = "weights") -> CheckpointInfo:
        """Save the run's adapter (``weights``) or adapter + optimizer + step (``state``)."""
        import torch
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        run = self._run(run_id)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise EngineError(
                "checkpoint name must be 1-64 letters, digits, '-' or '_'", param="name"
            )
        if kind not in ("weights", "state"):
            raise EngineError("kind must be 'weights' or 'state'", param="kind")
        final = self._ckpt_dir(run_id, name)
        if final.exists():
            raise EngineError(
                f"run {run_id} already has a checkpoint named {name!r}", param="name", status=409
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        text = self.text
        try:
            with text.lock:
                state = get_peft_model_state_dict(text.peft, adapter_name=run.adapter)
                tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
                save_file(tensors, str(tmp / "adapter_model.safetensors"))
                text.peft.peft_config[run.adapter].save_pretrained(str(tmp))
                if kind == "state":
                    torch.save(run.optimizer.state_dict(), tmp / "optimizer.pt")
            meta = {
                "run_id": run_id,
                "name": name,
                "kind": kind,
                "step": run.info.step,
                "created_at": time.time(),
                "run": asdict(run.info),
            }
            (tmp / _META).write_text(json.dumps(meta, indent=2))
            try:
                os.rename(tmp, final)
            except OSError as exc:
                raise EngineError(
                    f"run {run_id} already has a checkpoint named {name!r}",
                    param="name",
                    status=409,
                ) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        info = read_checkpoint(final)
        assert info is not None
        return info

    def _checkpoint(self, run_id: str, name: str) -> CheckpointInfo:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise EngineError(f"no checkpoint {name!r}", param="checkpoint", status=404)
        info = read_checkpoint(self._ckpt_dir(run_id, name))
        if info is None:
            raise EngineError(
                f"run {run_id} has no checkpoint {name!r}", param="checkpoint", status=404
            )
        return info

    def load_checkpoint(
        self, run_id: str, checkpoint: str, with_optimizer: bool = False
    ) -> CheckpointInfo:
        """Load a checkpoint's adapter weights into run ``run_id`` (and its optimizer state).

        Without ``with_optimizer`` the run gets a fresh AdamW; with it, the checkpoint must be
        a ``state`` checkpoint and the run resumes at the saved step with the saved moments.
        """
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        run = self._run(run_id)
        info = self._checkpoint(run_id, checkpoint)
        path = Path(info.path)
        if with_optimizer and info.kind != "state":
            raise EngineError(
                f"checkpoint {checkpoint!r} holds weights only; save it with kind='state' "
                "to resume the optimizer",
                param="with_optimizer",
            )
        saved = json.loads((path / _META).read_text()).get("run", {})
        if saved.get("rank", run.info.rank) != run.info.rank:
            raise EngineError(
                f"checkpoint rank {saved.get('rank')} does not match run rank {run.info.rank}",
                param="checkpoint",
            )
        text = self.text
        with text.lock:
            tensors = load_file(str(path / "adapter_model.safetensors"), device=str(text.device))
            result = set_peft_model_state_dict(text.peft, tensors, adapter_name=run.adapter)
            unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if unexpected:
                raise EngineError(
                    f"checkpoint {checkpoint!r} does not fit this run: {unexpected[:3]}",
                    param="checkpoint",
                )
            for p in run.params:
                p.grad = None
            optimizer = torch.optim.AdamW(run.params, lr=1e-4)
            if with_optimizer:
                optimizer.load_state_dict(
                    torch.load(path / "optimizer.pt", map_location=text.device, weights_only=True)
                )
            run.optimizer = optimizer
        run.pending_tokens = 0
        run.info.step = info.step
        return info

    def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """Checkpoints of a run, oldest first (also for runs of an earlier process)."""
        run_dir = self.root / run_id
        if run_id not in self._runs and not run_dir.is_dir():
            raise EngineError(f"unknown training run {run_id!r}", param="run_id", status=404)
        infos = [read_checkpoint(p) for p in run_dir.iterdir()] if run_dir.is_dir() else []
        return sorted((i for i in infos if i is not None), key=lambda i: i.created_at)

    def register_sampler(self, run_id: str, checkpoint: str | None = None) -> str:
        """Make a run (live weights) or one of its checkpoints sampleable; returns the name.

        ``checkpoint=None`` returns ``run_id``: the adapter being trained, as it is now.
        Otherwise the checkpoint is loaded as its own adapter named ``"<run_id>:<checkpoint>"``
        (a frozen copy that later training does not change).
        """
        if checkpoint is None:
            self._run(run_id)
            return run_id
        if run_id not in self._runs and not (self.root / run_id).is_dir():
            raise EngineError(f"unknown training run {run_id!r}", param="run_id", status=404)
        info = self._checkpoint(run_id, checkpoint)
        self.text.load_adapter(info.model_name, info.path)
        return info.model_name
