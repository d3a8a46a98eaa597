"""Causal-LM sampling with our own batched decode loop over the KV cache.

Why not ``model.generate``: a batch here mixes requests with different temperature, top-p,
top-k, stop strings, max_tokens and seeds, each of which must reproduce exactly what the same
request gives alone. ``generate`` takes one set of sampling parameters and one global RNG per
call. The loop below left-pads the prompts into one tensor (attention mask + explicit position
ids, so padding never shifts a row's positions), runs one forward pass per step for every row,
and then picks each row's token with that row's own parameters and its own
``torch.Generator``.

Logprobs: every returned logprob is ``log_softmax`` of the model's raw logits (temperature 1,
no top-k/top-p filtering) at the sampled token, i.e. the log-probability of the token under
the model's unmodified distribution. ``compute_logprobs`` returns the same quantity for a
given sequence, so the two agree and RL-style importance ratios can be formed from them.

LoRA: adapters live on one ``peft.PeftModel`` wrapped around the single copy of the base
weights; the training engine adds one adapter per run and one per checkpoint opened for
sampling. A forward pass activates the requested adapter with ``set_adapter`` (or disables
all of them for the base model); ``lock`` serialises this engine and the training engine so
no two threads ever switch adapters under each other.
"""

from __future__ import annotations

import inspect
import json
import secrets
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workbench_serving.engines.base import (
    EngineError,
    EngineKind,
    LogprobsItem,
    LogprobsResult,
    PretrainedEngine,
    SampledSequence,
    SampleItem,
    SampleResult,
)
from workbench_serving.engines.constraints import (
    GrammarCompiler,
    TokenConstraint,
    apply_token_constraints,
)

if TYPE_CHECKING:
    import torch

__all__ = ["TextEngine", "row_seed"]

MAX_NUM_SAMPLES = 64

FinishReason = Literal["stop", "length", "cancelled"]


def row_seed(seed: int, sample_index: int) -> int:
    """The generator seed for sample ``sample_index`` of a request seeded with ``seed``.

    Mixed (not ``seed + index``) so that sample 1 of seed 0 is not sample 0 of seed 1.
    """
    return (seed * 0x9E3779B97F4A7C15 + sample_index * 0xBF58476D1CE4E5B9) % (2**63 - 1)


def _is_cancelled(token: Any) -> bool:
    return token is not None and bool(getattr(token, "cancelled", False))


@dataclass
class _Row:
    """One sequence being generated: a (request, sample index) pair."""

    item_index: int
    sample_index: int
    item: SampleItem
    generator: torch.Generator
    stop_ids: frozenset[int]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    finish_reason: FinishReason | None = None
    constraint: TokenConstraint | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


_SHARED: weakref.WeakValueDictionary[tuple[str, str | None, str | None], TextEngine] = (
    weakref.WeakValueDictionary()
)


def tokenizer_files(
    tok: Any, path: Path | str | None, eos_token_ids: Sequence[int]
) -> dict[str, Any]:
    """What ``TextEngine.tokenizer_files`` returns, for any loaded fast tokenizer."""
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    tokenizer_json = backend.to_str() if backend is not None else None
    config: dict[str, Any] = {}
    if isinstance(path, Path) and (path / "tokenizer_config.json").exists():
        config = json.loads((path / "tokenizer_config.json").read_text())
    special = {
        key: str(getattr(tok, key))
        for key in ("bos_token", "eos_token", "pad_token", "unk_token")
        if getattr(tok, key, None) is not None
    }
    special_ids = {
        key: int(getattr(tok, f"{key}_id"))
        for key in special
        if getattr(tok, f"{key}_id", None) is not None
    }
    chat_template = getattr(tok, "chat_template", None)
    return {
        "tokenizer_json": tokenizer_json,
        "tokenizer_config": config,
        "chat_template": chat_template if isinstance(chat_template, str) else None,
        "special_tokens": special,
        "special_token_ids": special_ids,
        "additional_special_tokens": [str(t) for t in tok.all_special_tokens],
        "eos_token_ids": sorted(int(i) for i in eos_token_ids),
    }


class TextEngine(PretrainedEngine):
    """A causal language model served for sampling and logprobs, with LoRA adapters.

    Args:
        name: the model name clients use.
        path: a preset name, local directory or hub id (default: ``name``).
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA if available).
        dtype: ``"bfloat16"``, ``"float32"``, ... (default: bf16 on CUDA, fp32 on CPU).
    """

    kind: EngineKind = "text"

    def __init__(
        self,
        name: str,
        path: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__(name, path, device, dtype)
        self.model: Any = None
        self.tokenizer: Any = None
        self.peft: Any = None  # peft.PeftModel once the first adapter is added
        self._adapters: dict[str, str] = {}  # public adapter name -> peft adapter name
        self._path: Path | str | None = None
        self._logits_to_keep = False
        self._eos_ids: frozenset[int] = frozenset()
        self._grammars: GrammarCompiler | None = None
        _SHARED[(self.source, device, dtype)] = self

    @classmethod
    def find_shared(
        cls, source: str, device: str | None = None, dtype: str | None = None
    ) -> TextEngine | None:
        """The most recently created engine of this model, so training can share its weights."""
        return _SHARED.get((str(source), device, dtype))

    # ------------------------------------------------------------ loading

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        """Load tokenizer and model with ``from_pretrained``; idempotent."""
        with self.lock:
            if self.model is not None:
                return
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device, dtype, path = self._placement()
            tokenizer = AutoTokenizer.from_pretrained(path)
            model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            model.to(device)
            model.eval()
            model.requires_grad_(False)
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
            eos: set[int] = set()
            for source in (model.generation_config, model.config):
                value = getattr(source, "eos_token_id", None)
                if isinstance(value, int):
                    eos.add(value)
                elif isinstance(value, list | tuple):
                    eos.update(int(v) for v in value)
            if tokenizer.eos_token_id is not None:
                eos.add(int(tokenizer.eos_token_id))
            self._eos_ids = frozenset(eos)
            self._path = path
            self.tokenizer = tokenizer
            self.model = model

    def _require_loaded(self) -> None:
        if self.model is None:
            self.load()

    @property
    def device(self) -> torch.device:
        self._require_loaded()
        return next(self.model.parameters()).device  # type: ignore[no-any-return]

    @property
    def dtype(self) -> torch.dtype:
        self._require_loaded()
        return next(self.model.parameters()).dtype  # type: ignore[no-any-return]

    @property
    def context_length(self) -> int:
        """``config.max_position_embeddings``: prompt + generated tokens must fit in it."""
        self._require_loaded()
        config = self.model.config
        value = getattr(config, "max_position_embeddings", None)
        if value is None and hasattr(config, "get_text_config"):
            value = getattr(config.get_text_config(), "max_position_embeddings", None)
        return int(value) if value is not None else int(self.tokenizer.model_max_length)

    @property
    def vocab_size(self) -> int:
        self._require_loaded()
        return int(self.model.get_input_embeddings().weight.shape[0])

    @property
    def eos_token_ids(self) -> list[int]:
        self._require_loaded()
        return sorted(self._eos_ids)

    @property
    def path(self) -> Path | str:
        self._require_loaded()
        assert self._path is not None
        return self._path

    # ------------------------------------------------------------ tokenizer

    def encode_text(self, text: str) -> list[int]:
        """Tokenize plain text the way the model expects it (with BOS where the model has one)."""
        self._require_loaded()
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """Render chat messages with the tokenizer's chat template plus the generation prompt.

        ``tools`` (OpenAI-style function definitions) are handed to the template, for templates
        that render them.

        Raises:
            EngineError: the tokenizer has no chat template, or a message is malformed
                (``param="messages"``).
        """
        self._require_loaded()
        if not getattr(self.tokenizer, "chat_template", None):
            raise EngineError(f"model {self.name} has no chat template", param="messages")
        try:
            extra: dict[str, Any] = {} if tools is None else {"tools": tools}
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False, **extra
            )
        except Exception as exc:  # jinja errors on malformed messages
            raise EngineError(f"cannot render chat messages: {exc}", param="messages") from exc
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def decode(self, tokens: Sequence[int]) -> str:
        """Detokenize, dropping special tokens (BOS, EOS, chat markers)."""
        self._require_loaded()
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=True))

    def tokenizer_files(self) -> dict[str, Any]:
        """Everything a client needs to tokenize offline exactly like the server.

        Returns:
            ``tokenizer_json`` (the ``tokenizer.json`` text), ``tokenizer_config`` (dict),
            ``chat_template`` (str or None), ``special_tokens`` (name -> token),
            ``special_token_ids`` (name -> id) and ``eos_token_ids``.
        """
        self._require_loaded()
        return tokenizer_files(self.tokenizer, self._path, self.eos_token_ids)

    # ------------------------------------------------------------ adapters

    def has_adapter(self, name: str) -> bool:
        return name in self._adapters

    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    @staticmethod
    def _internal_name(name: str) -> str:
        # torch module names may not contain "." and peft matches adapter names inside state
        # dict keys, so the public name ("run_x:ckpt") is mapped to a plain identifier.
        return "a_" + "".join(c if c.isalnum() else "_" for c in name)

    def add_adapter(self, name: str, lora_config: Any) -> str:
        """Add a fresh LoRA adapter ``name`` on the shared base; returns peft's adapter name."""
        with self.lock:
            self._require_loaded()
            if name in self._adapters:
                raise EngineError(f"adapter {name!r} already exists", param="adapter", status=409)
            internal = self._internal_name(name)
            with warnings.catch_warnings():
                # peft still calls transformers' deprecated is_gradient_checkpointing.
                warnings.simplefilter("ignore", FutureWarning)
                if self.peft is None:
                    from peft import get_peft_model

                    self.peft = get_peft_model(self.model, lora_config, adapter_name=internal)
                else:
                    self.peft.add_adapter(internal, lora_config)
            self._adapters[name] = internal
            return internal

    def load_adapter(self, name: str, path: str | Path) -> str:
        """Add adapter ``name`` from a saved adapter directory (inference only)."""
        with self.lock:
            self._require_loaded()
            if name in self._adapters:
                return self._adapters[name]
            internal = self._internal_name(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                if self.peft is None:
                    from peft import PeftModel

                    self.peft = PeftModel.from_pretrained(
                        self.model, str(path), adapter_name=internal, is_trainable=False
                    )
                else:
                    self.peft.load_adapter(str(path), adapter_name=internal, is_trainable=False)
            self._adapters[name] = internal
            return internal

    def remove_adapter(self, name: str) -> None:
        with self.lock:
            internal = self._adapters.pop(name, None)
            if internal is not None and self.peft is not None:
                with warnings.catch_warnings():
                    # peft warns when the active adapter goes; every call sets its own anyway.
                    warnings.simplefilter("ignore", UserWarning)
                    self.peft.delete_adapter(internal)

    def adapter_internal_name(self, name: str) -> str:
        """peft's name for adapter ``name``.

        Raises:
            EngineError: 404 when no such adapter exists (``param="model"``).
        """
        internal = self._adapters.get(name)
        if internal is None:
            internal = self._adapter_from_disk(name)
        if internal is None:
            raise EngineError(f"unknown adapter {name!r}", param="model", status=404)
        return internal

    def _adapter_from_disk(self, name: str) -> str | None:
        """Open ``"<run_id>:<checkpoint>"`` from the checkpoints directory if it is saved there.

        Lets any text engine of the base model sample a checkpoint saved by a training engine
        (of this process or an earlier one) by name alone.
        """
        run_id, sep, ckpt = name.partition(":")
        if not sep or not run_id or not ckpt or "/" in name or ".." in name:
            return None
        from workbench_serving.engines.training import checkpoints_dir, read_checkpoint

        path = checkpoints_dir() / run_id / ckpt
        info = read_checkpoint(path) if path.is_dir() else None
        if info is None:
            return None
        return self.load_adapter(name, path)

    @contextmanager
    def using_adapter(self, adapter: str | None) -> Iterator[Any]:
        """Yield the model with ``adapter`` active (``None``: base weights, adapters off).

        Caller must hold ``lock``.
        """
        self._require_loaded()
        if adapter is None:
            if self.peft is None:
                yield self.model
            else:
                with self.peft.disable_adapter():
                    yield self.model
            return
        internal = self.adapter_internal_name(adapter)
        assert self.peft is not None
        self.peft.set_adapter(internal)
        yield self.model

    # ------------------------------------------------------------ scheduler contract

    def batch_key(self, item: SampleItem | LogprobsItem) -> tuple[str, str | None]:
        """Sampling and logprobs never share a batch; neither do two adapters."""
        kind = "logprobs" if isinstance(item, LogprobsItem) else "sample"
        return (kind, item.adapter)

    def run_batch(
        self, items: Sequence[SampleItem | LogprobsItem]
    ) -> list[SampleResult | LogprobsResult | BaseException]:
        """Run sampling and logprobs items; one result or exception per item, in order."""
        results: list[SampleResult | LogprobsResult | BaseException | None] = [None] * len(items)
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(self.batch_key(item), []).append(i)
        for (kind, _adapter), indices in groups.items():
            if kind == "sample":
                sampled = self.sample([items[i] for i in indices])  # type: ignore[misc]
                for i, res in zip(indices, sampled, strict=True):
                    results[i] = res
            else:
                lp_items: list[LogprobsItem] = [items[i] for i in indices]  # type: ignore[misc]
                for i, lp in zip(indices, self._logprobs_safe(lp_items), strict=True):
                    results[i] = lp if isinstance(lp, BaseException) else LogprobsResult(lp)
        return [r if r is not None else RuntimeError("item not run") for r in results]

    def describe(self) -> dict[str, Any]:
        self._require_loaded()
        return {
            "kind": self.kind,
            "name": self.name,
            "source": str(self.source),
            "context_length": self.context_length,
            "vocab_size": self.vocab_size,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "eos_token_ids": self.eos_token_ids,
            "has_chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
            "adapters": self.adapters(),
        }

    # ------------------------------------------------------------ validation

    def _check_tokens(self, tokens: Sequence[int], param: str) -> None:
        if not tokens:
            raise EngineError(f"{param} must hold at least one token", param=param)
        vocab = self.vocab_size
        for t in tokens:
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab:
                raise EngineError(f"{param} holds token id {t!r} outside [0, {vocab})", param=param)

    def validate(self, item: SampleItem) -> None:
        """Raise ``EngineError`` naming the field if ``item`` cannot be served."""
        self._check_tokens(item.prompt_tokens, "prompt")
        if item.max_tokens < 1:
            raise EngineError("max_tokens must be at least 1", param="max_tokens")
        ctx = self.context_length
        if len(item.prompt_tokens) + item.max_tokens > ctx:
            raise EngineError(
                f"prompt ({len(item.prompt_tokens)} tokens) + max_tokens ({item.max_tokens}) "
                f"exceeds the context length {ctx} of {self.name}",
                param="max_tokens",
            )
        if not 1 <= item.num_samples <= MAX_NUM_SAMPLES:
            raise EngineError(f"num_samples must be in [1, {MAX_NUM_SAMPLES}]", param="num_samples")
        if not item.temperature >= 0.0:  # also rejects NaN
            raise EngineError("temperature must be >= 0", param="temperature")
        if not 0.0 < item.top_p <= 1.0:
            raise EngineError("top_p must be in (0, 1]", param="top_p")
        if item.top_k < 0:
            raise EngineError("top_k must be >= 0 (0 = off)", param="top_k")
        if any(not isinstance(s, str) or not s for s in item.stop):
            raise EngineError("stop strings must be non-empty strings", param="stop")
        if item.stop_token_ids:
            self._check_tokens(item.stop_token_ids, "stop_token_ids")
        if item.adapter is not None:
            self.adapter_internal_name(item.adapter)
        if item.constraint is not None:
            self.grammars.validate(item.constraint)

    @property
    def grammars(self) -> GrammarCompiler:
        """This model's grammar compiler (built on first use; holds the compiled-grammar cache)."""
        self._require_loaded()
        if self._grammars is None:
            self._grammars = GrammarCompiler(self.tokenizer, self.vocab_size, self.eos_token_ids)
        return self._grammars

    # ------------------------------------------------------------ sampling

    def sample(self, items: Sequence[SampleItem]) -> list[SampleResult | BaseException]:
        """Sample every item in one batched decode loop; invalid items get their error."""
        import torch

        with self.lock:
            self._require_loaded()
            results: list[SampleResult | BaseException | None] = [None] * len(items)
            by_adapter: dict[str | None, list[int]] = {}
            for i, item in enumerate(items):
                try:
                    self.validate(item)
                except EngineError as exc:
                    results[i] = exc
                    continue
                by_adapter.setdefault(item.adapter, []).append(i)
            for adapter, indices in by_adapter.items():
                try:
                    with torch.no_grad(), self.using_adapter(adapter) as model:
                        rows = self._decode(model, [items[i] for i in indices])
                except EngineError as exc:
                    for i in indices:
                        results[i] = exc
                    continue
                for local, i in enumerate(indices):
                    mine = sorted(
                        (r for r in rows if r.item_index == local), key=lambda r: r.sample_index
                    )
                    results[i] = SampleResult(
                        sequences=[
                            SampledSequence(
                                tokens=r.tokens,
                                text=r.text,
                                logprobs=r.logprobs,
                                finish_reason=r.finish_reason or "length",
                            )
                            for r in mine
                        ],
                        prompt_tokens=len(items[i].prompt_tokens),
                    )
            return [r if r is not None else RuntimeError("item not run") for r in results]

    def _forward(self, model: Any, **kwargs: Any) -> Any:
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        return model(use_cache=True, return_dict=True, **kwargs)

    def _decode(self, model: Any, items: Sequence[SampleItem]) -> list[_Row]:
        """The batched decode loop: one forward pass per step for every live row."""
        import torch

        device = self.device
        rows: list[_Row] = []
        for item_index, item in enumerate(items):
            seed = item.seed if item.seed is not None else secrets.randbits(62)
            stop_ids = self._eos_ids | frozenset(item.stop_token_ids)
            base = None
            if item.constraint is not None:
                base = self.grammars.constraint(item.constraint, item.max_tokens)
            for j in range(item.num_samples):
                gen = torch.Generator(device="cpu")
                gen.manual_seed(row_seed(seed, j))
                constraint = None if base is None else (base if j == 0 else base.fork())
                rows.append(_Row(item_index, j, item, gen, stop_ids, constraint=constraint))

        # Prefill each prompt once; its num_samples rows then share that prefix in the cache.
        pad_id = int(self.tokenizer.pad_token_id)
        lengths = [len(item.prompt_tokens) for item in items]
        width = max(lengths)
        input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for b, item in enumerate(items):
            n = lengths[b]
            input_ids[b, width - n :] = torch.tensor(item.prompt_tokens, dtype=torch.long)
            mask[b, width - n :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        out = self._forward(model, input_ids=input_ids, attention_mask=mask, position_ids=positions)
        cache = out.past_key_values
        logits_now = out.logits[:, -1, :]
        if len(rows) > len(items):
            expand = torch.tensor([r.item_index for r in rows], dtype=torch.long, device=device)
            cache.batch_select_indices(expand)
            mask, positions, logits_now = mask[expand], positions[expand], logits_now[expand]
        next_pos = positions[:, -1:] + 1
        max_steps = max(r.item.max_tokens for r in rows)
        live = list(rows)  # rows still in the batch, in cache order
        for _step in range(max_steps):
            for r in live:  # cancellation is honoured between steps
                if not r.finished and _is_cancelled(r.item.cancel):
                    self._finish(r, "cancelled")
            logits = logits_now.float()
            logprobs = torch.log_softmax(logits, dim=-1)  # raw model logprobs, before any mask
            apply_token_constraints(logits, [None if r.finished else r.constraint for r in live])
            next_tokens: list[int] = []
            for b, r in enumerate(live):
                if r.finished:
                    next_tokens.append(pad_id)
                    continue
                token = self._choose(logits[b], r)
                next_tokens.append(token)
                done = r.constraint is not None and (
                    not r.constraint.accept_token(token) or r.constraint.is_terminated()
                )
                self._append(r, token, float(logprobs[b, token]), grammar_done=done)
            keep = [b for b, r in enumerate(live) if not r.finished]
            if not keep:
                break
            if len(keep) < len(live) and hasattr(cache, "batch_select_indices"):
                # Drop finished rows from the cache so short requests stop costing compute.
                index = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(index)
                mask, next_pos = mask[index], next_pos[index]
                live = [live[b] for b in keep]
                next_tokens = [next_tokens[b] for b in keep]
            step_ids = torch.tensor(next_tokens, dtype=torch.long, device=device).unsqueeze(-1)
            mask = torch.cat([mask, torch.ones_like(step_ids)], dim=-1)
            out = self._forward(
                model,
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=next_pos,
                past_key_values=cache,
            )
            cache = out.past_key_values
            logits_now = out.logits[:, -1, :]
            next_pos = next_pos + 1
        for r in rows:
            if not r.finished:
                self._finish(r, "length")
        return rows

    @staticmethod
    def _choose(logits: torch.Tensor, row: _Row) -> int:
        """Pick one token with the row's own parameters and generator."""
        import torch

        item = row.item
        if item.temperature == 0.0:
            return int(torch.argmax(logits))
        scaled = logits / item.temperature
        if 0 < item.top_k < scaled.shape[-1]:
            kth = torch.topk(scaled, item.top_k).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        if item.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            # Keep the smallest prefix whose mass reaches top_p (always the first token).
            drop = (cumulative - sorted_probs) >= item.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        # Inverse-CDF draw with a uniform from the row's CPU generator: the same seed gives the
        # same draw on any device and in any batch.
        cdf = torch.cumsum(probs, dim=-1)
        u = torch.rand((1,), generator=row.generator).to(cdf.device, cdf.dtype) * cdf[-1]
        token = int(torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1))
        while probs[token] <= 0 and token > 0:  # never land on a filtered-out token
            token -= 1
        return token

    def _append(self, row: _Row, token: int, logprob: float, grammar_done: bool = False) -> None:
        """Record a sampled token, detect stops, and stream the safe part of the text.

        ``grammar_done``: the row's grammar is complete with this token, which is kept in the
        text (unlike a stop token) and ends the row with ``"stop"``.
        """
        item = row.item
        row.tokens.append(token)
        row.logprobs.append(logprob)
        stopped = token in row.stop_ids
        text_tokens = row.tokens[:-1] if stopped else row.tokens
        stopped = stopped or grammar_done
        streaming = item.on_token is not None
        if not (streaming or item.stop):
            if stopped:
                row.finish_reason = "stop"
            elif len(row.tokens) >= item.max_tokens:
                row.finish_reason = "length"
            if row.finished:
                row.text = self.decode(text_tokens)
            return
        text = self.decode(text_tokens)
        if item.stop:
            hits = [i for i in (text.find(s) for s in item.stop) if i >= 0]
            if hits:
                text = text[: min(hits)]
                stopped = True
        if stopped:
            row.finish_reason = "stop"
        elif len(row.tokens) >= item.max_tokens:
            row.finish_reason = "length"
        row.text = text
        if row.finished:
            safe = len(text)
        else:
            safe = len(text)
            if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its bytes
                safe = len(text.rstrip("\ufffd"))
            for s in item.stop:  # hold back a tail that could still become a stop string
                for k in range(min(len(s) - 1, len(text)), 0, -1):
                    if text.endswith(s[:k]):
                        safe = min(safe, len(text) - k)
                        break
        delta = text[row.emitted : safe] if safe > row.emitted else ""
        row.emitted = max(row.emitted, safe)
        if item.on_token is not None:
            self._emit(row, item.on_token, token, delta)

    def _emit(
        self, row: _Row, callback: Callable[[int, int, str], None], token: int, delta: str
    ) -> None:
        try:
            callback(row.sample_index, token, delta)
        except Exception:
            # A consumer that cannot take tokens any more (client gone) ends this sample.
            if not row.finished:
                row.finish_reason = "cancelled"

    def _finish(self, row: _Row, reason: FinishReason) -> None:
        row.finish_reason = reason
        if row.item.on_token is None and not row.item.stop:
            row.text = self.decode(row.tokens)

    # ------------------------------------------------------------ logprobs

    def _logprobs_safe(
        self, items: Sequence[LogprobsItem]
    ) -> list[list[float | None] | BaseException]:
        out: list[list[float | None] | BaseException] = []
        valid: list[int] = []
        for i, item in enumerate(items):
            try:
                self._require_loaded()
                self._check_tokens(item.tokens, "prompt")
                if len(item.tokens) > self.context_length:
                    raise EngineError(
                        f"sequence of {len(item.tokens)} tokens exceeds the context length "
                        f"{self.context_length}",
                        param="prompt",
                    )
                if item.adapter is not None:
                    self.adapter_internal_name(item.adapter)
                valid.append(i)
                out.append([])
            except EngineError as exc:
                out.append(exc)
        if valid:
            for i, lp in zip(valid, self.compute_logprobs([items[i] for i in valid]), strict=True):
                out[i] = lp
        return out

    def compute_logprobs(self, items: Sequence[LogprobsItem]) -> list[list[float | None]]:
        """Per-token logprobs of each sequence under the model (``None`` for the first token).

        Entry ``i`` is ``log p(tokens[i] | tokens[:i])`` from the raw logits, the same quantity
        sampling reports.

        Raises:
            EngineError: an invalid sequence or unknown adapter.
        """
        import torch

        with self.lock:
            self._require_loaded()
            results: list[list[float | None] | None] = [None] * len(items)
            by_adapter: dict[str | None, list[int]] = {}
            for i, item in enumerate(items):
                self._check_tokens(item.tokens, "prompt")
                by_adapter.setdefault(item.adapter, []).append(i)
            for adapter, indices in by_adapter.items():
                with torch.no_grad(), self.using_adapter(adapter) as model:
                    seqs = [items[i].tokens for i in indices]
                    scores = self.score(model, seqs, [s[1:] for s in seqs])
                for i, lp in zip(indices, scores, strict=True):
                    results[i] = [None, *lp]
            return [r if r is not None else [] for r in results]

    def score(
        self, model: Any, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Logprob of ``targets[b][i]`` after ``inputs[b][: i + 1]`` (no grad unless enabled).

        Right-padded batch; ``targets[b]`` may be shorter than ``inputs[b]`` (the tail is
        ignored). Returns plain floats; see ``score_tensor`` for the differentiable form.
        """
        lp, lengths = self.score_tensor(model, inputs, targets)
        return [lp[b, : lengths[b]].tolist() for b in range(len(inputs))]

    def score_tensor(
        self, model: Any, inputs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, list[int]]:
        """Differentiable ``[batch, max_len]`` target logprobs and each row's target count."""
        import torch

        device = self.device
        width = max(len(s) for s in inputs)
        pad_id = int(self.tokenizer.pad_token_id)
        ids = torch.full((len(inputs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(inputs), width), dtype=torch.long)
        tgt = torch.zeros((len(inputs), width), dtype=torch.long)
        lengths: list[int] = []
        for b, (seq, target) in enumerate(zip(inputs, targets, strict=True)):
            ids[b, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
            mask[b, : len(seq)] = 1
            n = min(len(target), len(seq))
            if n:
                tgt[b, :n] = torch.tensor(list(target[:n]), dtype=torch.long)
            lengths.append(n)
        ids, mask, tgt = ids.to(device), mask.to(device), tgt.to(device)
        out = model(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=True)
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        return logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1), lengths
