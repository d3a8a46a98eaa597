"""TextEngine on the tiny-llama preset: batched sampling, determinism, stops, streaming."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import _engine_fixtures
import pytest

from workbench_core.cancel import CancelToken
from workbench_serving.engines import (
    EngineError,
    LogprobsItem,
    LogprobsResult,
    SampleItem,
    SampleResult,
    TextEngine,
)


@pytest.fixture(scope="module")
def engine() -> TextEngine:
    eng = _engine_fixtures.text_engine()
    assert isinstance(eng, TextEngine)
    return eng


@pytest.fixture(scope="module")
def prompt(engine: TextEngine) -> list[int]:
    return engine.encode_text("Once upon a time there was a little robot")


def run_one(engine: TextEngine, item: SampleItem) -> SampleResult:
    (result,) = engine.run_batch([item])
    assert isinstance(result, SampleResult), result
    return result


def test_same_seed_same_request_gives_same_tokens(engine: TextEngine, prompt: list[int]) -> None:
    a = run_one(engine, SampleItem(prompt, max_tokens=12, temperature=1.0, seed=11))
    b = run_one(engine, SampleItem(prompt, max_tokens=12, temperature=1.0, seed=11))
    c = run_one(engine, SampleItem(prompt, max_tokens=12, temperature=1.0, seed=12))
    assert a.sequences[0].tokens == b.sequences[0].tokens
    assert a.sequences[0].tokens != c.sequences[0].tokens


def test_batch_of_mixed_params_matches_each_request_alone(
    engine: TextEngine, prompt: list[int]
) -> None:
    items = [
        SampleItem(prompt, max_tokens=10, temperature=1.0, seed=1),
        SampleItem(engine.encode_text("Hello"), max_tokens=6, temperature=0.7, top_p=0.9, seed=2),
        SampleItem(prompt[:4], max_tokens=14, temperature=1.3, top_k=20, seed=3, num_samples=2),
        SampleItem(engine.encode_text("The sky"), max_tokens=8, temperature=0.0),
    ]
    alone = [run_one(engine, it) for it in items]
    together = engine.run_batch(items)
    for single, batched in zip(alone, together, strict=True):
        assert isinstance(batched, SampleResult)
        assert len(batched.sequences) == len(single.sequences)
        for s, t in zip(single.sequences, batched.sequences, strict=True):
            assert s.tokens == t.tokens
            assert s.text == t.text
            assert s.finish_reason == t.finish_reason
            assert s.logprobs == pytest.approx(t.logprobs, abs=1e-4)


def test_num_samples_draws_distinct_reproducible_samples(
    engine: TextEngine, prompt: list[int]
) -> None:
    res = run_one(engine, SampleItem(prompt, max_tokens=10, num_samples=3, seed=5))
    assert res.prompt_tokens == len(prompt)
    tokens = [s.tokens for s in res.sequences]
    assert len({tuple(t) for t in tokens}) == 3
    again = run_one(engine, SampleItem(prompt, max_tokens=10, num_samples=3, seed=5))
    assert [s.tokens for s in again.sequences] == tokens


def test_greedy_ignores_the_seed_and_top_k_1_equals_greedy(
    engine: TextEngine, prompt: list[int]
) -> None:
    a = run_one(engine, SampleItem(prompt, max_tokens=10, temperature=0.0, seed=1))
    b = run_one(engine, SampleItem(prompt, max_tokens=10, temperature=0.0, seed=2))
    k1 = run_one(engine, SampleItem(prompt, max_tokens=10, temperature=1.0, top_k=1, seed=3))
    assert a.sequences[0].tokens == b.sequences[0].tokens == k1.sequences[0].tokens


def test_logprobs_are_finite_non_positive_and_one_per_token(
    engine: TextEngine, prompt: list[int]
) -> None:
    res = run_one(engine, SampleItem(prompt, max_tokens=16, seed=4, num_samples=2))
    for seq in res.sequences:
        assert len(seq.logprobs) == len(seq.tokens) > 0
        assert all(math.isfinite(lp) and lp <= 0.0 for lp in seq.logprobs)


def test_compute_logprobs_matches_the_sampling_logprobs(
    engine: TextEngine, prompt: list[int]
) -> None:
    seq = run_one(engine, SampleItem(prompt, max_tokens=12, seed=9)).sequences[0]
    (scored,) = engine.compute_logprobs([LogprobsItem(tokens=prompt + seq.tokens)])
    assert scored[0] is None
    assert len(scored) == len(prompt) + len(seq.tokens)
    tail = scored[len(prompt) :]
    assert [x for x in tail if x is not None] == pytest.approx(seq.logprobs, abs=1e-4)
    (via_batch,) = engine.run_batch([LogprobsItem(tokens=prompt + seq.tokens)])
    assert isinstance(via_batch, LogprobsResult)
    assert via_batch.logprobs[1:] == pytest.approx(scored[1:], abs=1e-5)


def test_max_tokens_bounds_the_output_with_finish_reason_length(
    engine: TextEngine, prompt: list[int]
) -> None:
    # The model may emit an end token first; otherwise it stops at exactly max_tokens.
    res = run_one(engine, SampleItem(prompt, max_tokens=7, temperature=0.0))
    seq = res.sequences[0]
    if seq.finish_reason == "length":
        assert len(seq.tokens) == 7
    else:
        assert seq.tokens[-1] in engine.eos_token_ids and len(seq.tokens) <= 7


def test_stop_token_id_ends_the_sample_with_finish_reason_stop(
    engine: TextEngine, prompt: list[int]
) -> None:
    greedy = run_one(engine, SampleItem(prompt, max_tokens=12, temperature=0.0)).sequences[0]
    stop_at = greedy.tokens[3]
    first = greedy.tokens.index(stop_at)
    res = run_one(
        engine, SampleItem(prompt, max_tokens=12, temperature=0.0, stop_token_ids=[stop_at])
    )
    seq = res.sequences[0]
    assert seq.finish_reason == "stop"
    assert seq.tokens == greedy.tokens[: first + 1]
    assert seq.text == engine.decode(greedy.tokens[:first])


def test_stop_string_truncates_text_before_it(engine: TextEngine) -> None:
    # Find a prompt whose greedy text is long enough to pick a stop string from its middle.
    prompt = engine.encode_text("The robot asked the baker what colour the sky should be")
    greedy = run_one(engine, SampleItem(prompt, max_tokens=20, temperature=0.0)).sequences[0]
    text = greedy.text
    assert len(text) >= 6
    stop = text[3:5]
    cut = text.find(stop)
    res = run_one(engine, SampleItem(prompt, max_tokens=20, temperature=0.0, stop=[stop, "zzzz"]))
    seq = res.sequences[0]
    assert seq.finish_reason == "stop"
    assert seq.text == text[:cut]
    assert stop not in seq.text
    assert len(seq.tokens) <= len(greedy.tokens)


def test_streamed_text_never_leaks_a_stop_string(engine: TextEngine) -> None:
    prompt = engine.encode_text("The robot asked the baker what colour the sky should be")
    greedy = run_one(engine, SampleItem(prompt, max_tokens=20, temperature=0.0)).sequences[0]
    for start in range(2, min(10, len(greedy.text) - 3)):
        stop = greedy.text[start : start + 3]
        deltas: list[str] = []
        item = SampleItem(
            prompt,
            max_tokens=20,
            temperature=0.0,
            stop=[stop],
            on_token=lambda i, tok, text, sink=deltas: sink.append(text),
        )
        seq = run_one(engine, item).sequences[0]
        assert seq.finish_reason == "stop"
        assert seq.text == greedy.text[: greedy.text.find(stop)]
        assert "".join(deltas) == seq.text


def test_streaming_calls_back_in_order_and_the_deltas_add_up_to_the_text(
    engine: TextEngine, prompt: list[int]
) -> None:
    events: list[tuple[int, int, str]] = []
    item = SampleItem(
        prompt,
        max_tokens=10,
        num_samples=2,
        seed=21,
        stop=["xq"],
        on_token=lambda i, tok, text: events.append((i, tok, text)),
    )
    res = run_one(engine, item)
    for index, seq in enumerate(res.sequences):
        mine = [e for e in events if e[0] == index]
        assert [e[1] for e in mine] == seq.tokens
        assert "".join(e[2] for e in mine) == seq.text
    # Both samples advance together, one token per step.
    first_steps = [e[0] for e in events[:2]]
    assert sorted(first_steps) == [0, 1]
    plain = run_one(engine, SampleItem(prompt, max_tokens=10, num_samples=2, seed=21))
    assert [s.tokens for s in plain.sequences] == [s.tokens for s in res.sequences]


def test_cancel_mid_generation_stops_between_steps(engine: TextEngine, prompt: list[int]) -> None:
    token = CancelToken()
    seen: list[int] = []

    def on_token(index: int, tok: int, text: str) -> None:
        seen.append(tok)
        if len(seen) == 3:
            token.cancel("test")

    eos = engine.eos_token_ids
    res = run_one(
        engine,
        SampleItem(
            prompt,
            max_tokens=50,
            seed=3,
            temperature=1.0,
            on_token=on_token,
            cancel=token,
            stop_token_ids=[],
        ),
    )
    seq = res.sequences[0]
    if seq.finish_reason == "stop":  # the sample ended by itself before the cancel
        assert seq.tokens[-1] in eos and len(seq.tokens) <= 3
    else:
        assert seq.finish_reason == "cancelled"
        assert len(seq.tokens) == 3


def test_a_consumer_that_raises_ends_only_its_own_request(
    engine: TextEngine, prompt: list[int]
) -> None:
    def broken(index: int, tok: int, text: str) -> None:
        raise ConnectionError("client went away")

    bad = SampleItem(prompt, max_tokens=20, temperature=0.0, on_token=broken)
    good = SampleItem(prompt, max_tokens=5, temperature=0.0)
    r_bad, r_good = engine.run_batch([bad, good])
    assert isinstance(r_bad, SampleResult) and isinstance(r_good, SampleResult)
    assert r_bad.sequences[0].finish_reason == "cancelled"
    assert len(r_bad.sequences[0].tokens) == 1
    assert r_good.sequences[0].tokens == run_one(engine, good).sequences[0].tokens


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"prompt_tokens": []}, "prompt"),
        ({"prompt_tokens": [1, 10**6]}, "prompt"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10_000}, "max_tokens"),
        ({"num_samples": 0}, "num_samples"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"stop": [""]}, "stop"),
        ({"stop_token_ids": [-1]}, "stop_token_ids"),
        ({"adapter": "no-such-adapter"}, "model"),
    ],
)
def test_bad_items_fail_alone_with_the_field_named(
    engine: TextEngine, prompt: list[int], changes: dict[str, Any], param: str
) -> None:
    kwargs: dict[str, Any] = {"prompt_tokens": prompt, "max_tokens": 4, **changes}
    good = SampleItem(prompt, max_tokens=3, temperature=0.0)
    bad_result, good_result = engine.run_batch([SampleItem(**kwargs), good])
    assert isinstance(bad_result, EngineError)
    assert bad_result.param == param
    assert bad_result.status == (404 if param == "model" else 400)
    assert isinstance(good_result, SampleResult)


def test_prompt_plus_max_tokens_beyond_the_context_length_is_rejected(
    engine: TextEngine,
) -> None:
    ctx = engine.context_length
    assert ctx == 1024  # config.max_position_embeddings of tiny-llama
    ok = run_one(engine, SampleItem([1] * (ctx - 2), max_tokens=2, temperature=0.0))
    assert len(ok.sequences[0].tokens) <= 2
    (err,) = engine.run_batch([SampleItem([1] * (ctx - 2), max_tokens=3)])
    assert isinstance(err, EngineError) and err.param == "max_tokens"


def test_chat_encoding_uses_the_template_with_a_generation_prompt(engine: TextEngine) -> None:
    ids = engine.encode_chat([{"role": "user", "content": "Hello there"}])
    text = engine.tokenizer.decode(ids)
    assert text.startswith("<s><|im_start|>user\nHello there<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    with pytest.raises(EngineError) as info:
        engine.encode_chat([{"content": "no role"}])
    assert info.value.param == "messages"


def test_tokenizer_files_let_a_client_rebuild_the_tokenizer(engine: TextEngine) -> None:
    from tokenizers import Tokenizer

    files = engine.tokenizer_files()
    assert files["special_tokens"]["eos_token"] == "</s>"
    assert files["chat_template"] and "<|im_start|>" in files["chat_template"]
    assert set(engine.eos_token_ids) <= set(files["eos_token_ids"])
    rebuilt = Tokenizer.from_str(files["tokenizer_json"])
    text = "The quick brown fox"
    assert rebuilt.encode(text).ids == engine.encode_text(text)


def test_describe_reports_context_length_device_and_dtype(engine: TextEngine) -> None:
    info = engine.describe()
    assert info["kind"] == "text"
    assert info["context_length"] == 1024
    assert info["device"] == "cpu" and info["dtype"] == "float32"


def test_importing_the_engines_does_not_import_torch() -> None:
    code = "import sys, workbench_serving.engines; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
