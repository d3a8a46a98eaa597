"""Constrained decoding: a per-row grammar applied as a token mask inside the batched sampler.

Why llguidance (not xgrammar): both compile JSON Schema / regex / CFG grammars into per-step
token masks, but on this CPU-only project llguidance installs as one 3 MB wheel with no
dependencies (xgrammar pulls ``triton``, about 1 GB, and ``apache-tvm-ffi``), imports in 15 ms
(xgrammar 195 ms) and compiles a small JSON schema in ~2.4 ms (xgrammar ~3.5 ms). Its mask costs
about 30 us per token on the tiny tokenizer (xgrammar ~2 us), which is noise next to a forward
pass. The benchmark
``benchmarks/bench_constrained_batch.py`` measures the effect on batch throughput.

The pieces:

- ``ConstraintSpec``: what a request asks for (a JSON schema, any JSON object, a regex, or a
  Lark grammar); plain data, hashable by its canonical text, carried on ``SampleItem``.
- ``GrammarCompiler``: one per tokenizer. Compiles a spec into an llguidance matcher and keeps
  compiled matchers in an LRU cache, so a repeated schema costs one ``deep_copy``.
- ``TokenConstraint``: the live state of one row (``fork`` per sample, ``accept_token``,
  ``is_terminated``).
- ``apply_token_constraints``: masks a ``[B, V]`` logits tensor in place for the rows that carry
  a constraint, one bitmask fill per constrained row and one ``masked_fill_`` for the batch, so
  constrained and free requests share one decode step.

Budget-aware closing: a random (or small) model under a JSON grammar can stay inside a string
forever and run out of ``max_tokens`` with half a document. When a JSON-shaped row gets close
to its token budget, the mask narrows further to the tokens that close what is open (EOS when
the grammar accepts, then ``"`` inside a string, then ``}`` / ``]`` and ``,``), tracked by a
small JSON scanner over the accepted bytes. The grammar still decides what is legal; the
closing rule only chooses among legal tokens, so the output stays schema-valid.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from workbench_serving.engines.base import EngineError

if TYPE_CHECKING:
    import torch
    from llguidance._lib import JsonCompileOptions

__all__ = [
    "ConstraintSpec",
    "GrammarCompiler",
    "TokenConstraint",
    "apply_token_constraints",
]

ConstraintKind = Literal["json_schema", "json_object", "regex", "lark"]

# A JSON row switches to the closing rule once its remaining budget is within this margin of
# the estimated cost of closing everything that is open (see ``TokenConstraint.closing``).
_CLOSING_MARGIN = 4
# The estimate (a short simulation) is refreshed after a token that changes the JSON structure
# once the budget gets near it, and at least every this many tokens.
_ESTIMATE_EVERY = 8
# Bytes whose appearance may change what closing costs (a new key, value or container).
_STRUCTURAL = frozenset(b'"{}[],:')
# Single-byte tokens the closing rule may prefer.
_CLOSING_BYTES = (b'"', b"}", b"]", b",", b"0", b"[", b"{", b"n", b"t", b"f")

_JSON_KINDS = frozenset({"json_schema", "json_object"})


@dataclass(frozen=True)
class ConstraintSpec:
    """A grammar a request's output must match.

    Attributes:
        kind: ``"json_schema"`` (``value`` is the schema as a dict), ``"json_object"`` (any JSON
            object; ``value`` is ignored), ``"regex"`` or ``"lark"`` (``value`` is the text).
        value: the schema, regex or grammar.
        strict: for JSON schemas, reject keywords the compiler does not implement (a 400)
            instead of ignoring them.
        param: the request field to name in errors (``"response_format"``, ``"tools"``...).
        json_like: whether the output is JSON-shaped (enables the closing rule for ``lark``
            grammars built around JSON, such as tool calls).
    """

    kind: ConstraintKind
    value: Any = None
    strict: bool = True
    param: str = "response_format"
    json_like: bool = False

    @property
    def key(self) -> str:
        """Canonical text of the spec: equal specs share one compiled grammar."""
        value = json.dumps(self.value, sort_keys=True) if self.kind == "json_schema" else self.value
        return f"{self.kind}|{int(self.strict)}|{value}"

    @property
    def is_json(self) -> bool:
        return self.kind in _JSON_KINDS or self.json_like

    def grammar(self) -> str:
        """The llguidance grammar text for this spec (not yet checked against a tokenizer)."""
        import llguidance

        # Compact JSON: no free whitespace, so a model cannot spend its budget on blanks.
        options: JsonCompileOptions = {"whitespace_flexible": False}
        if self.kind == "json_schema":
            if not isinstance(self.value, dict):
                raise EngineError("a JSON schema must be an object", param=self.param)
            options["lenient"] = not self.strict
            try:
                return str(llguidance.LLMatcher.grammar_from_json_schema(self.value, options))
            except ValueError as exc:
                raise EngineError(f"invalid JSON schema: {exc}", param=self.param) from exc
        if self.kind == "json_object":
            return str(llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, options))
        if not isinstance(self.value, str) or not self.value:
            raise EngineError(
                f"a {self.kind} constraint needs a non-empty string", param=self.param
            )
        if self.kind == "regex":
            return str(llguidance.LLMatcher.grammar_from_regex(self.value))
        return str(llguidance.LLMatcher.grammar_from_lark(self.value))


class GrammarCompiler:
    """Compiles ``ConstraintSpec``s for one tokenizer, with an LRU cache of compiled grammars.

    Args:
        tokenizer: a Hugging Face fast tokenizer.
        vocab_size: the model's logits width (may exceed the tokenizer's vocabulary).
        eos_token_ids: tokens that end a sequence; allowed once the grammar accepts.
        cache_size: how many compiled grammars to keep.
    """

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        eos_token_ids: Sequence[int],
        cache_size: int = 256,
    ) -> None:
        import llguidance.hf

        eos = sorted(int(i) for i in eos_token_ids) or None
        tok_vocab = len(tokenizer)
        self.vocab_size = max(int(vocab_size), tok_vocab)
        # llguidance's token-trie "slices" speed masks up for large vocabularies; below a few
        # thousand tokens they cost more than they save (measured: 5.2 vs 6.7 us per mask).
        slices: list[str] | None = [] if tok_vocab < 4096 else None
        self.tokenizer = llguidance.hf.from_tokenizer(
            tokenizer, n_vocab=self.vocab_size, eos_token=eos, slices=slices
        )
        self.eos_token_ids = list(eos or [])
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._closers = self._single_byte_tokens(tokenizer, tok_vocab)

    def _single_byte_tokens(self, tokenizer: Any, n: int) -> dict[bytes, list[int]]:
        """Ids of the tokens that are exactly one of the characters the closing rule uses."""
        wanted = set(_CLOSING_BYTES)
        found: dict[bytes, list[int]] = {w: [] for w in wanted}
        vocab = tokenizer.get_vocab()
        for token_id in vocab.values():
            if token_id >= n:
                continue
            raw = self.tokenizer.decode_bytes([int(token_id)])
            if raw in wanted:
                found[raw].append(int(token_id))
        return found

    def compile(self, spec: ConstraintSpec) -> Any:
        """A fresh matcher for ``spec`` (from the cache when the same spec was compiled before).

        Raises:
            EngineError: the grammar is invalid (``param`` is the spec's field).
        """
        import llguidance

        key = spec.key
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return cached.deep_copy()
        grammar = spec.grammar()
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self.tokenizer
        )
        if is_error:
            raise EngineError(f"invalid {spec.kind} grammar: {messages[0]}", param=spec.param)
        matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise EngineError(
                f"invalid {spec.kind} grammar: {matcher.get_error()}", param=spec.param
            )
        with self._lock:
            self.misses += 1
            self._cache[key] = matcher
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return matcher.deep_copy()

    def constraint(self, spec: ConstraintSpec, max_tokens: int | None = None) -> TokenConstraint:
        """The live constraint of one row for ``spec``."""
        return TokenConstraint(self, self.compile(spec), spec, max_tokens)

    def validate(self, spec: ConstraintSpec) -> None:
        """Compile ``spec`` (warming the cache) or raise ``EngineError`` naming its field."""
        self.compile(spec)


class _JsonScanner:
    """Tracks what is open in a JSON text (strings, objects, arrays) as bytes arrive."""

    __slots__ = ("escape", "in_string", "stack")

    def __init__(self) -> None:
        self.stack: list[bytes] = []
        self.in_string = False
        self.escape = False

    def copy(self) -> _JsonScanner:
        out = _JsonScanner()
        out.stack = list(self.stack)
        out.in_string, out.escape = self.in_string, self.escape
        return out

    def feed(self, data: bytes) -> None:
        for byte in data:
            ch = bytes((byte,))
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif ch == b"\\":
                    self.escape = True
                elif ch == b'"':
                    self.in_string = False
            elif ch == b'"':
                self.in_string = True
            elif ch in (b"{", b"["):
                self.stack.append(b"}" if ch == b"{" else b"]")
            elif ch in (b"}", b"]") and self.stack:
                self.stack.pop()

    def closers(self) -> list[bytes]:
        """Characters to prefer when closing, best first.

        Inside a string: its closing quote. Outside: close the innermost container, else move
        to the next item (a required key may still be missing), else start the shortest value
        the grammar allows (``0``, ``""``, ``[]``, ``{}``, ``null``/``true``/``false``).
        """
        if self.in_string:
            return [] if self.escape else [b'"']
        head = [self.stack[-1], b","] if self.stack else []
        return [*head, b"0", b'"', b"[", b"{", b"n", b"t", b"f"]


class TokenConstraint:
    """One row's grammar state: what the next token may be, and whether the output is complete.

    Built by ``GrammarCompiler.constraint``; ``fork`` gives each of a request's samples its own
    copy in the same (initial) state.
    """

    def __init__(
        self,
        compiler: GrammarCompiler,
        matcher: Any,
        spec: ConstraintSpec,
        max_tokens: int | None = None,
    ) -> None:
        self.compiler = compiler
        self.matcher = matcher
        self.spec = spec
        self.max_tokens = max_tokens
        self.count = 0
        self._scanner = _JsonScanner() if spec.is_json else None
        self._closing = False
        self._estimate = 0
        self._estimated_at = -(10**9)
        self._changed = True  # a structural token since the last estimate
        self._path: list[int] = []  # the simulated closing path from the current state

    def fork(self) -> TokenConstraint:
        """An independent copy in the same state (one per sample of a request)."""
        twin = TokenConstraint(self.compiler, self.matcher.deep_copy(), self.spec, self.max_tokens)
        twin.count = self.count
        twin._scanner = self._scanner.copy() if self._scanner is not None else None
        twin._closing = self._closing
        twin._estimate, twin._estimated_at = self._estimate, self._estimated_at
        twin._changed = self._changed
        twin._path = list(self._path)
        return twin

    def accept_token(self, token: int) -> bool:
        """Advance the grammar by the sampled token; False if the grammar rejected it."""
        self.count += 1
        if token in self.compiler.eos_token_ids and self.matcher.is_accepting():
            self.matcher.consume_token(token)
            return True
        ok = bool(self.matcher.consume_token(int(token)))
        if ok and self._scanner is not None:
            data = self.compiler.tokenizer.decode_bytes([int(token)])
            self._scanner.feed(data)
            if self._path and self._path[0] == token:
                # The model took the simulated path's next step: the estimate holds, one less.
                self._path.pop(0)
                self._estimate = max(0, self._estimate - 1)
                self._estimated_at = self.count
            else:
                self._path = []
                if not self._changed and any(b in _STRUCTURAL for b in data):
                    self._changed = True
        return ok

    def is_terminated(self) -> bool:
        """No further token but EOS can follow: the output is complete (or the grammar failed)."""
        return bool(self.matcher.is_stopped() or self.matcher.is_error())

    def is_accepting(self) -> bool:
        """The output so far is a complete match (it could end here)."""
        return bool(self.matcher.is_accepting())

    @property
    def error(self) -> str | None:
        return str(self.matcher.get_error()) if self.matcher.is_error() else None

    def fill_bitmask(self, bitmask: torch.Tensor, index: int) -> None:
        """Write the allowed-token bitmask into row ``index`` of an int32 CPU tensor."""
        row = bitmask[index]
        if self.matcher.is_error() or self.matcher.is_stopped():
            row.zero_()
            for eos in self.compiler.eos_token_ids:
                row[eos // 32] |= _bit(eos % 32)
            return
        self.matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())

    def closing(self) -> bool:
        """Whether the row must now close its JSON to fit in ``max_tokens``.

        Compares the remaining budget with the cost of closing from here, estimated by running
        the closing rule on a copy of the matcher; the estimate is refreshed every few tokens,
        and every token once the budget gets near it. Once closing, a row stays closing.
        """
        if self._closing:
            return True
        if self.max_tokens is None or self._scanner is None:
            return False
        remaining = self.max_tokens - self.count
        near = remaining <= 2 * self._estimate + 2 * _CLOSING_MARGIN
        # Content tokens (inside a string, digits) leave the cost of closing as it was, so the
        # simulation reruns only after a structural token, or now and then.
        if (near and self._changed) or self.count - self._estimated_at >= _ESTIMATE_EVERY:
            # Capped where the answer is known: beyond it, the row must close now.
            self._estimate = self._closing_cost(cap=remaining - _CLOSING_MARGIN + 1)
            self._estimated_at = self.count
            self._changed = False
        self._closing = remaining <= self._estimate + _CLOSING_MARGIN
        return self._closing

    def _closing_cost(self, cap: int) -> int:
        """Tokens the closing rule needs from the current state to a complete output."""
        matcher = self.matcher.deep_copy()
        assert self._scanner is not None
        scanner = self._scanner.copy()
        tokenizer = self.compiler.tokenizer
        steps = 0
        path = self._path = []
        while steps < cap:
            if matcher.is_error():
                return cap
            if matcher.is_accepting() or matcher.is_stopped():
                return steps + (0 if matcher.is_stopped() else 1)
            # Asking the matcher about the few candidate tokens is much cheaper than a full mask.
            pick = None
            closers = self.compiler._closers
            for ch in scanner.closers():
                for tok in closers.get(ch, ()):
                    if matcher.validate_tokens([tok]) == 1:
                        pick = tok
                        break
                if pick is not None:
                    break
            if pick is None:
                forced = matcher.compute_ff_tokens()
                if forced:
                    matcher.consume_tokens(forced)
                    scanner.feed(tokenizer.decode_bytes(forced))
                    steps += len(forced)
                    path.extend(forced)
                    continue
                pick = _first_set_bit(matcher.compute_bitmask())
                if pick is None:
                    return cap
            matcher.consume_token(pick)
            scanner.feed(tokenizer.decode_bytes([pick]))
            steps += 1
            path.append(pick)
        return cap

    def preferred(self) -> list[list[int]]:
        """Token-id groups to prefer while closing, best first (EOS first when accepting)."""
        if self._scanner is None:
            return []
        return _groups(self.compiler, self._scanner, accepting=self.matcher.is_accepting())


def _groups(compiler: GrammarCompiler, scanner: _JsonScanner, accepting: bool) -> list[list[int]]:
    groups: list[list[int]] = []
    if accepting and compiler.eos_token_ids:
        groups.append(compiler.eos_token_ids)
    for ch in scanner.closers():
        ids = compiler._closers.get(ch, [])
        if ids:
            groups.append(ids)
    return groups


def _first_set_bit(mask: bytes) -> int | None:
    for i, byte in enumerate(mask):
        if byte:
            return i * 8 + ((byte & -byte).bit_length() - 1)
    return None


def _bit(i: int) -> int:
    # int32 storage: bit 31 is the sign bit.
    return (1 << i) - (1 << 32) if i == 31 else 1 << i


def _unpack(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """``[R, ceil(V/32)]`` int32 bitmask -> ``[R, V]`` bool (True = allowed)."""
    import numpy as np
    import torch

    # Little-endian int32 words: bit k of word w is byte 4w + k // 8, bit k % 8.
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")
    return torch.from_numpy(bits[:, :vocab].astype(np.bool_))


_EXECUTOR: Any = None
# Masks are computed on llguidance's thread pool only when there is enough work to pay for it
# (measured here: ~6 us per row for a 512-token vocabulary, ~150 us to go through the pool).
_PARALLEL_ROWS = 4
_PARALLEL_VOCAB = 16_384


def _executor() -> Any:
    """llguidance's thread pool for computing many rows' masks in one call (GIL released)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        import os

        import llguidance

        _EXECUTOR = llguidance.LLExecutor(num_threads=max(1, min(4, (os.cpu_count() or 2) - 1)))
    return _EXECUTOR


def _closing_row(words: Any, c: TokenConstraint) -> bool:
    """Write the closing rule's choice into one bitmask row; False when it has none.

    Asks the matcher about the few preferred tokens instead of computing the full mask: the
    row then allows only the best preferred group the grammar accepts (``words`` is the row as
    a numpy int32 view).
    """
    matcher = c.matcher
    for group in c.preferred():
        keep = [t for t in group if matcher.validate_tokens([t]) == 1]
        if keep:
            words[:] = 0
            for t in keep:
                words[t >> 5] |= _bit(t & 31)
            return True
    return False


def apply_token_constraints(
    logits: torch.Tensor, constraints: Sequence[TokenConstraint | None]
) -> torch.Tensor | None:
    """Mask, in place, the tokens each constrained row's grammar forbids next.

    The masks of all constrained rows are computed into one int32 bitmask (in one call on
    llguidance's thread pool, the GIL released, when the vocabulary is large), unpacked once, and
    applied with one ``masked_fill_``.

    Args:
        logits: ``[B, V]`` float logits of one decode step (any device).
        constraints: one entry per row; ``None`` rows are left untouched.

    Returns:
        The ``[B, V]`` bool mask of allowed tokens (on ``logits``' device), or ``None`` when no
        row is constrained.
    """
    import torch

    rows = [b for b, c in enumerate(constraints) if c is not None]
    if not rows:
        return None
    batch, vocab = logits.shape
    width = (vocab + 31) // 32
    bitmask = torch.empty((len(rows), width), dtype=torch.int32)
    view = bitmask.numpy()  # shares memory; element writes are cheap here
    live: list[tuple[Any, int]] = []
    for j, b in enumerate(rows):
        c = constraints[b]
        assert c is not None
        if c.matcher.is_error() or c.matcher.is_stopped():
            c.fill_bitmask(bitmask, j)
        elif not (c.closing() and _closing_row(view[j], c)):
            live.append((c.matcher, j))
    if len(live) >= _PARALLEL_ROWS and vocab >= _PARALLEL_VOCAB:
        _executor().unsafe_compute_mask_ptr(live, bitmask.data_ptr(), width * 4, len(rows))
    else:  # a small mask costs microseconds; waking the pool would cost more
        for matcher, j in live:
            row = bitmask[j]
            matcher.unsafe_compute_mask_ptr(row.data_ptr(), width * 4)
    allowed_rows = _unpack(bitmask, vocab)
    if len(rows) == batch:
        allowed = allowed_rows
    else:
        allowed = torch.ones((batch, vocab), dtype=torch.bool)
        allowed[torch.tensor(rows, dtype=torch.long)] = allowed_rows
    allowed = allowed.to(logits.device)
    logits.masked_fill_(~allowed, float("-inf"))
    return allowed
