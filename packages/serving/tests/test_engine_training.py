"""TrainingEngine: LoRA runs on the tiny-llama base shared with the TextEngine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _engine_fixtures
import pytest

from workbench_serving.engines import (
    AdamParams,
    CheckpointInfo,
    EngineError,
    ForwardBackwardResult,
    LogprobsItem,
    SampleItem,
    SampleResult,
    TextEngine,
    TrainingDatum,
    TrainingEngine,
    TrainingOp,
)

LR = AdamParams(learning_rate=2e-2)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training-home")


@pytest.fixture(scope="module")
def text() -> TextEngine:
    eng = _engine_fixtures.text_engine()
    assert isinstance(eng, TextEngine)
    return eng


@pytest.fixture(scope="module")
def trainer(text: TextEngine, home: Path) -> TrainingEngine:
    eng = TrainingEngine("tiny-llama", text_engine=text, root=home / "checkpoints")
    eng.load()
    return eng


@pytest.fixture(scope="module")
def datum(text: TextEngine) -> TrainingDatum:
    toks = text.encode_text("The robot painted the sky blue every day of the week.")
    return TrainingDatum(tokens=toks[:-1], target_tokens=toks[1:], weights=[1.0] * (len(toks) - 1))


def train(trainer: TrainingEngine, run_id: str, datum: TrainingDatum, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        losses.append(trainer.forward_backward(run_id, [datum]).loss)
        trainer.optim_step(run_id, LR)
    return losses


def scored(text: TextEngine, datum: TrainingDatum, adapter: str | None) -> list[float]:
    (lp,) = text.compute_logprobs([LogprobsItem(tokens=datum.tokens, adapter=adapter)])
    return [x for x in lp if x is not None]


def test_loss_decreases_within_a_few_steps(trainer: TrainingEngine, datum: TrainingDatum) -> None:
    run = trainer.create_run(rank=4, seed=0)
    losses = train(trainer, run, datum, 6)
    assert losses[-1] < losses[0] - 0.2
    assert trainer.get_run(run).step == 6


def test_forward_backward_reports_weighted_loss_and_target_logprobs(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=2, seed=1)
    half = TrainingDatum(
        datum.tokens, datum.target_tokens, [0.0] * 4 + [1.0] * (len(datum.tokens) - 4)
    )
    res = trainer.forward_backward(run, [half])
    assert isinstance(res, ForwardBackwardResult)
    (lps,) = res.logprobs
    assert len(lps) == len(datum.tokens)
    weighted = -sum(lp for lp, w in zip(lps, half.weights, strict=True) if w) / sum(half.weights)
    assert res.loss == pytest.approx(weighted, rel=1e-5)
    assert res.num_tokens == len(datum.tokens) - 4
    # Before any step the adapter is the identity (LoRA B starts at zero): base logprobs.
    assert lps[:-1] == pytest.approx(scored(text, datum, None), abs=1e-5)


def test_a_new_run_samples_like_the_base_model(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=4, seed=3)
    item = {"prompt_tokens": datum.tokens[:3], "max_tokens": 8, "temperature": 0.0}
    base, live = text.run_batch([SampleItem(**item), SampleItem(**item, adapter=run)])
    assert isinstance(base, SampleResult) and isinstance(live, SampleResult)
    assert base.sequences[0].tokens == live.sequences[0].tokens


def test_two_runs_share_one_copy_of_the_base_weights(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum
) -> None:
    def base_storage() -> list[int]:
        # Names change when peft first wraps a layer (".base_layer."); storage must not.
        return sorted(p.data_ptr() for n, p in text.model.named_parameters() if "lora_" not in n)

    before = base_storage()
    a = trainer.create_run(rank=4, seed=10)
    b = trainer.create_run(rank=4, seed=11)
    assert base_storage() == before
    params_a = {p.data_ptr() for p in trainer.run_parameters(a)}
    params_b = {p.data_ptr() for p in trainer.run_parameters(b)}
    assert params_a and params_b and not params_a & params_b
    b_before = scored(text, datum, b)
    train(trainer, a, datum, 2)
    assert scored(text, datum, b) == b_before  # training A leaves B alone
    assert scored(text, datum, a) != b_before


def test_weights_checkpoint_round_trip(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum, home: Path
) -> None:
    run = trainer.create_run(rank=4, seed=4)
    train(trainer, run, datum, 3)
    saved = scored(text, datum, run)
    info = trainer.save_checkpoint(run, "w3")
    assert isinstance(info, CheckpointInfo)
    assert info.kind == "weights" and info.step == 3
    path = Path(info.path)
    assert path == home / "checkpoints" / run / "w3"
    assert (path / "adapter_model.safetensors").exists()
    assert (path / "adapter_config.json").exists()
    assert not (path / "optimizer.pt").exists()
    train(trainer, run, datum, 2)
    assert scored(text, datum, run) != pytest.approx(saved, abs=1e-4)
    trainer.load_checkpoint(run, "w3")
    assert scored(text, datum, run) == pytest.approx(saved, abs=1e-6)
    assert trainer.get_run(run).step == 3
    assert [c.name for c in trainer.list_checkpoints(run)] == ["w3"]


def test_state_checkpoint_resumes_the_optimizer_exactly(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=4, seed=5)
    train(trainer, run, datum, 2)
    info = trainer.save_checkpoint(run, "s2", kind="state")
    assert (Path(info.path) / "optimizer.pt").exists()
    train(trainer, run, datum, 1)
    continued = scored(text, datum, run)

    trainer.load_checkpoint(run, "s2", with_optimizer=True)
    assert trainer.get_run(run).step == 2
    train(trainer, run, datum, 1)
    assert scored(text, datum, run) == pytest.approx(continued, abs=1e-5)

    # Weights alone restart Adam from zero moments: the next step lands elsewhere.
    trainer.load_checkpoint(run, "s2", with_optimizer=False)
    train(trainer, run, datum, 1)
    assert scored(text, datum, run) != pytest.approx(continued, abs=1e-5)


def test_sampling_from_a_saved_adapter_differs_from_the_base(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=8, seed=6)
    train(trainer, run, datum, 8)
    trainer.save_checkpoint(run, "final")
    name = trainer.register_sampler(run, "final")
    assert name == f"{run}:final"
    item = {"prompt_tokens": datum.tokens[:2], "max_tokens": 10, "temperature": 0.0}
    live, frozen, base = text.run_batch(
        [SampleItem(**item, adapter=run), SampleItem(**item, adapter=name), SampleItem(**item)]
    )
    assert isinstance(live, SampleResult) and isinstance(frozen, SampleResult)
    assert isinstance(base, SampleResult)
    assert frozen.sequences[0].tokens == live.sequences[0].tokens
    assert frozen.sequences[0].logprobs != pytest.approx(base.sequences[0].logprobs, abs=1e-3)
    # The trained adapter has learned the sentence: it continues it better than the base.
    assert sum(scored(text, datum, name)) > sum(scored(text, datum, None))
    # Training on afterwards moves the live run but not the frozen checkpoint.
    before = scored(text, datum, name)
    train(trainer, run, datum, 1)
    assert scored(text, datum, name) == before


def test_another_text_engine_samples_a_checkpoint_from_disk_by_name(
    trainer: TrainingEngine,
    text: TextEngine,
    datum: TrainingDatum,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = trainer.create_run(rank=4, seed=7)
    train(trainer, run, datum, 3)
    trainer.save_checkpoint(run, "disk")
    expected = scored(text, datum, trainer.register_sampler(run, "disk"))
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    fresh = TextEngine("tiny-llama", device="cpu", dtype="float32")
    fresh.load()
    assert scored(fresh, datum, f"{run}:disk") == pytest.approx(expected, abs=1e-5)


def test_ops_run_through_run_batch_in_order(trainer: TrainingEngine, datum: TrainingDatum) -> None:
    (run,) = trainer.run_batch([TrainingOp("create_run", payload={"rank": 2, "seed": 8})])
    assert isinstance(run, str)
    data = [
        {"tokens": datum.tokens, "target_tokens": datum.target_tokens, "weights": datum.weights}
    ]
    results = trainer.run_batch(
        [
            TrainingOp("forward_backward", run, {"data": data, "loss_fn": "cross_entropy"}),
            TrainingOp("optim_step", run, {"adam_params": {"learning_rate": 0.02}}),
            TrainingOp("save_checkpoint", run, {"name": "a", "kind": "state"}),
            TrainingOp("list_checkpoints", run),
            TrainingOp("get_run", run),
            TrainingOp("optim_step", "run_missing", {}),
        ]
    )
    fb, step, ckpt, listed, info, missing = results
    assert isinstance(fb, ForwardBackwardResult)
    assert step == 1
    assert isinstance(ckpt, CheckpointInfo) and ckpt.step == 1
    assert [c.name for c in listed] == ["a"]
    assert info.run_id == run and info.step == 1
    assert isinstance(missing, EngineError) and missing.status == 404
    assert trainer.batch_key(TrainingOp("get_run", run)) != trainer.batch_key(
        TrainingOp("get_run", "other")
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda t, d: t.forward_backward("run_nope", [d]),
        lambda t, d: t.optim_step("run_nope", AdamParams()),
        lambda t, d: t.save_checkpoint("run_nope", "x"),
        lambda t, d: t.load_checkpoint("run_nope", "x"),
        lambda t, d: t.list_checkpoints("run_nope"),
        lambda t, d: t.register_sampler("run_nope"),
        lambda t, d: t.get_run("run_nope"),
    ],
)
def test_unknown_run_is_a_404_naming_run_id(
    trainer: TrainingEngine, datum: TrainingDatum, call: Any
) -> None:
    with pytest.raises(EngineError) as info:
        call(trainer, datum)
    assert info.value.status == 404 and info.value.param == "run_id"


def test_bad_requests_name_the_field(trainer: TrainingEngine, datum: TrainingDatum) -> None:
    run = trainer.create_run(rank=2, seed=9)
    cases: list[tuple[Any, str, int]] = [
        (lambda: trainer.create_run(rank=0), "rank", 400),
        (lambda: trainer.create_run(target_modules=["no_such_layer"]), "target_modules", 400),
        (lambda: trainer.create_run(base_model="other-model"), "base_model", 400),
        (lambda: trainer.forward_backward(run, []), "data", 400),
        (lambda: trainer.forward_backward(run, [datum], loss_fn="ppo_magic"), "loss_fn", 400),
        (
            lambda: trainer.forward_backward(
                run, [TrainingDatum(datum.tokens, datum.target_tokens[:-1], datum.weights)]
            ),
            "data[0].target_tokens",
            400,
        ),
        (
            lambda: trainer.forward_backward(
                run, [TrainingDatum(datum.tokens, datum.target_tokens, [0.0] * len(datum.tokens))]
            ),
            "data",
            400,
        ),
        (
            lambda: trainer.forward_backward(run, [TrainingDatum([10**6], [1], [1.0])]),
            "data[0].tokens",
            400,
        ),
        (
            lambda: trainer.optim_step(run, AdamParams(learning_rate=-1.0)),
            "adam_params.learning_rate",
            400,
        ),
        (lambda: trainer.save_checkpoint(run, "../escape"), "name", 400),
        (lambda: trainer.save_checkpoint(run, "x", kind="everything"), "kind", 400),
        (lambda: trainer.load_checkpoint(run, "never-saved"), "checkpoint", 404),
    ]
    for call, param, status in cases:
        with pytest.raises(EngineError) as info:
            call()
        assert (info.value.param, info.value.status) == (param, status)

    trainer.save_checkpoint(run, "dup")
    with pytest.raises(EngineError) as dup:
        trainer.save_checkpoint(run, "dup")
    assert (dup.value.param, dup.value.status) == ("name", 409)
    with pytest.raises(EngineError) as no_state:
        trainer.load_checkpoint(run, "dup", with_optimizer=True)
    assert no_state.value.param == "with_optimizer"


def test_importance_sampling_with_on_policy_logprobs_is_minus_mean_advantage(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=4, seed=12)
    current = trainer.forward_backward(run, [datum]).logprobs[0]
    for p in trainer.run_parameters(run):
        p.grad = None
    n = len(datum.tokens)
    advantages = [1.0 if i % 2 else -0.5 for i in range(n)]
    rl = TrainingDatum(datum.tokens, datum.target_tokens, datum.weights, current, advantages)
    res = trainer.forward_backward(run, [rl], loss_fn="importance_sampling")
    assert res.loss == pytest.approx(-sum(advantages) / n, abs=1e-5)


def test_positive_advantage_steps_make_the_sequence_more_likely(
    trainer: TrainingEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=4, seed=13)
    before = sum(trainer.forward_backward(run, [datum]).logprobs[0])
    for p in trainer.run_parameters(run):
        p.grad = None
    for _ in range(3):
        current = trainer.forward_backward(run, [datum]).logprobs[0]
        for p in trainer.run_parameters(run):
            p.grad = None
        rl = TrainingDatum(
            datum.tokens, datum.target_tokens, datum.weights, current, [1.0] * len(current)
        )
        trainer.forward_backward(run, [rl], loss_fn="importance_sampling")
        trainer.optim_step(run, LR)
    after = sum(trainer.forward_backward(run, [datum]).logprobs[0])
    assert after > before


def test_ppo_gives_no_gradient_where_the_ratio_is_clipped(
    trainer: TrainingEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=4, seed=14)
    train(trainer, run, datum, 1)  # make LoRA B non-zero so every LoRA parameter gets grads
    current = trainer.forward_backward(run, [datum]).logprobs[0]
    for p in trainer.run_parameters(run):
        p.grad = None
    n = len(current)
    # The sampler found every token far less likely (ratio >> 1 + clip) and the advantage is
    # positive: PPO's clipped objective is flat there.
    clipped = TrainingDatum(
        datum.tokens, datum.target_tokens, datum.weights, [c - 5.0 for c in current], [1.0] * n
    )
    trainer.forward_backward(run, [clipped], loss_fn="ppo")
    grads = [p.grad for p in trainer.run_parameters(run)]
    assert all(g is None or float(g.abs().max()) == 0.0 for g in grads)
    # Inside the clip range the same data has a gradient.
    inside = TrainingDatum(datum.tokens, datum.target_tokens, datum.weights, current, [1.0] * n)
    trainer.forward_backward(run, [inside], loss_fn="ppo")
    assert any(
        p.grad is not None and float(p.grad.abs().max()) > 0 for p in trainer.run_parameters(run)
    )


def test_policy_losses_need_logprobs_and_advantages(
    trainer: TrainingEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=2, seed=15)
    with pytest.raises(EngineError) as info:
        trainer.forward_backward(run, [datum], loss_fn="importance_sampling")
    assert info.value.param == "data[0].logprobs"
    short = TrainingDatum(
        datum.tokens, datum.target_tokens, datum.weights, [0.0] * len(datum.tokens), [1.0]
    )
    with pytest.raises(EngineError) as info:
        trainer.forward_backward(run, [short], loss_fn="ppo")
    assert info.value.param == "data[0].advantages"


def test_deleting_a_run_frees_its_adapter_and_keeps_its_checkpoints(
    trainer: TrainingEngine, text: TextEngine, datum: TrainingDatum
) -> None:
    run = trainer.create_run(rank=2, seed=16)
    train(trainer, run, datum, 1)
    trainer.save_checkpoint(run, "kept")
    (deleted,) = trainer.run_batch([TrainingOp("delete_run", run)])
    assert deleted.run_id == run
    assert run not in text.adapters()
    assert not any(f"a_{run}." in n for n, _ in text.model.named_parameters())
    with pytest.raises(EngineError) as info:
        trainer.get_run(run)
    assert info.value.status == 404
    (missing,) = text.run_batch([SampleItem(datum.tokens[:2], max_tokens=2, adapter=run)])
    assert isinstance(missing, EngineError) and missing.status == 404
    assert [c.name for c in trainer.list_checkpoints(run)] == ["kept"]


def test_describe_names_the_base_model(trainer: TrainingEngine) -> None:
    info = trainer.describe()
    assert info["kind"] == "training"
    assert info["base_model"] == "tiny-llama"
    assert info["context_length"] == 1024
