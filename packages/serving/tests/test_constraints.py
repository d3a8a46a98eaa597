"""Constrained decoding in the text engine: grammars as token masks inside the batched sampler.

The tiny preset has random weights, so anything it writes under a grammar that matches the
grammar is the mask's doing, not the model's.
"""

from __future__ import annotations

import json
import re

import _engine_fixtures
import jsonschema
import pytest

from workbench_serving.engines import (
    ConstraintSpec,
    EngineError,
    SampleItem,
    SampleResult,
    TextEngine,
    apply_token_constraints,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "kind": {"enum": ["cat", "dog"]},
    },
    "required": ["name", "age", "tags", "kind"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine() -> TextEngine:
    eng = _engine_fixtures.text_engine()
    assert isinstance(eng, TextEngine)
    return eng


@pytest.fixture(scope="module")
def prompt(engine: TextEngine) -> list[int]:
    return engine.encode_text("Once upon a time there was a little robot")


def test_constrained_and_free_rows_share_one_batch(engine: TextEngine, prompt: list[int]) -> None:
    spec = ConstraintSpec("json_schema", SCHEMA)
    items = [
        SampleItem(prompt, max_tokens=40, num_samples=3, seed=1, constraint=spec),
        SampleItem(prompt, max_tokens=40, seed=1),
        SampleItem(
            prompt,
            max_tokens=12,
            temperature=0.0,
            constraint=ConstraintSpec("regex", r"[0-9]{3}-(yes|no)"),
        ),
        SampleItem(prompt, max_tokens=30, seed=5, constraint=ConstraintSpec("json_object")),
    ]
    results = engine.run_batch(items)
    assert all(isinstance(r, SampleResult) for r in results), results
    json_rows = results[0].sequences  # type: ignore[union-attr]
    assert len(json_rows) == 3
    for seq in json_rows:
        jsonschema.validate(json.loads(seq.text), SCHEMA)
        assert seq.finish_reason == "stop"
    assert len({s.text for s in json_rows}) > 1, "each sample has its own grammar state"
    free = results[1].sequences[0]  # type: ignore[union-attr]
    alone = engine.run_batch([SampleItem(prompt, max_tokens=40, seed=1)])[0]
    assert free.tokens == alone.sequences[0].tokens  # type: ignore[union-attr]
    regex = results[2].sequences[0]  # type: ignore[union-attr]
    assert re.fullmatch(r"[0-9]{3}-(yes|no)", regex.text), regex.text
    assert regex.finish_reason == "stop"
    obj = json.loads(results[3].sequences[0].text)  # type: ignore[union-attr]
    assert isinstance(obj, dict)


def test_budget_close_keeps_a_tight_max_tokens_schema_valid(
    engine: TextEngine, prompt: list[int]
) -> None:
    # The shortest valid document is ~35 tokens of this tokenizer; a random model left alone
    # wanders inside the first string for longer than that. The closing rule ends the strings
    # early so the document still completes within the budget.
    spec = ConstraintSpec("json_schema", SCHEMA)
    (result,) = engine.run_batch(
        [SampleItem(prompt, max_tokens=40, num_samples=4, seed=3, temperature=1.5, constraint=spec)]
    )
    assert isinstance(result, SampleResult)
    for seq in result.sequences:
        assert len(seq.tokens) <= 40
        jsonschema.validate(json.loads(seq.text), SCHEMA)


def test_logprobs_are_the_models_own_not_the_masked_ones(
    engine: TextEngine, prompt: list[int]
) -> None:
    spec = ConstraintSpec("regex", r"(yes|no)")
    (result,) = engine.run_batch(
        [SampleItem(prompt, max_tokens=4, temperature=0.0, constraint=spec)]
    )
    assert isinstance(result, SampleResult)
    seq = result.sequences[0]
    from workbench_serving.engines import LogprobsItem

    (lp,) = engine.compute_logprobs([LogprobsItem(tokens=[*prompt, *seq.tokens])])
    for got, want in zip(seq.logprobs, lp[len(prompt) :], strict=True):
        assert want is not None and abs(got - want) < 1e-4
    assert seq.text in ("yes", "no")


def test_compiled_grammars_are_cached(engine: TextEngine, prompt: list[int]) -> None:
    spec = ConstraintSpec(
        "json_schema",
        {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]},
    )
    compiler = engine.grammars
    engine.run_batch([SampleItem(prompt, max_tokens=12, seed=1, constraint=spec)])
    misses = compiler.misses
    hits = compiler.hits
    same = ConstraintSpec("json_schema", json.loads(json.dumps(spec.value)))
    engine.run_batch([SampleItem(prompt, max_tokens=12, seed=2, constraint=same)])
    assert compiler.misses == misses
    assert compiler.hits > hits


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (
            ConstraintSpec(
                "json_schema", {"type": "object", "properties": {"a": {"type": "nope"}}}
            ),
            "json_schema",
        ),
        (ConstraintSpec("regex", "(unclosed", param="regex"), "regex"),
        (ConstraintSpec("lark", "start: undefined_rule", param="grammar"), "lark"),
    ],
)
def test_invalid_grammar_is_an_engine_error_naming_the_field(
    engine: TextEngine, prompt: list[int], spec: ConstraintSpec, needle: str
) -> None:
    (result,) = engine.run_batch([SampleItem(prompt, max_tokens=4, constraint=spec)])
    assert isinstance(result, EngineError)
    assert result.param == spec.param
    assert needle in result.message


def test_apply_masks_only_constrained_rows(engine: TextEngine) -> None:
    import torch

    c = engine.grammars.constraint(ConstraintSpec("regex", "a"))
    logits = torch.zeros((2, engine.vocab_size))
    allowed = apply_token_constraints(logits, [None, c])
    assert allowed is not None
    assert bool(torch.isfinite(logits[0]).all())
    finite = torch.isfinite(logits[1]).nonzero().flatten().tolist()
    assert finite and all(
        engine.decode([t]).startswith("a") or t in engine.eos_token_ids for t in finite
    )
    assert apply_token_constraints(logits, [None, None]) is None
