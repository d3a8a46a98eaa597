"""TrainingClient against the real server: ordered steps, checkpoints, sampling from weights,
state save/load, and the tracker hook."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import FAST, TEXT_MODEL, TRAINING_MODELS

import workbench_client as wc
from workbench_client import ServiceClient, TrainingClient
from workbench_client.types import AdamParams, Datum, ModelInput, SamplingParams

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TRAINING_MODELS, reason="the test server was started without training"),
]


@pytest.fixture(scope="module")
def service(server: str) -> ServiceClient:
    return ServiceClient(base_url=server, retry_policy=FAST)


def _datum(training: TrainingClient, text: str) -> Datum:
    ids = training.get_tokenizer().encode(text)
    return Datum(
        model_input=ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": ids[1:], "weights": [1.0] * (len(ids) - 1)},
    )


class RecordingRun:
    """Stands in for a tracker run: the hook's only contract is ``log(dict, step=...)``."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int]] = []

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((dict(metrics), int(step or 0)))


def test_steps_submitted_back_to_back_apply_in_order_and_lower_the_loss(
    service: ServiceClient,
) -> None:
    run = RecordingRun()
    training = service.create_lora_training_client(TEXT_MODEL, rank=4, seed=7, tracker_run=run)
    datum = _datum(training, "hello world hello world hello world")
    futures: list[Any] = []
    for _ in range(4):  # nothing awaited until the end: ordering is the client's job
        futures.append(training.forward_backward([datum], "cross_entropy"))
        futures.append(training.optim_step(AdamParams(learning_rate=5e-2)))
    results = [f.result(timeout=300) for f in futures]
    losses = [r.loss for r in results[0::2]]
    steps = [r.step for r in results[1::2]]
    assert steps == [1, 2, 3, 4]
    assert losses[-1] < losses[0]
    assert training.get_info().step == 4
    # The tracker hook logged each step's loss and learning rate at that step.
    assert [s for _, s in run.logged] == [1, 2, 3, 4]
    assert [m["loss"] for m, _ in run.logged] == pytest.approx(losses)
    assert all(m["learning_rate"] == 5e-2 for m, _ in run.logged)


async def test_async_variants_return_awaitable_futures(service: ServiceClient) -> None:
    training = await service.create_lora_training_client_async(TEXT_MODEL, rank=4, seed=1)
    datum = _datum(training, "async training works")
    fb = await training.forward_backward_async([datum])
    st = await training.optim_step_async(AdamParams(learning_rate=1e-2))
    assert (await fb).loss > 0
    assert (await st.result_async(timeout=300)).step == 1


def test_saved_weights_can_be_sampled_and_listed(service: ServiceClient) -> None:
    training = service.create_lora_training_client(TEXT_MODEL, rank=4, seed=3)
    datum = _datum(training, "sample from me")
    training.forward_backward([datum]).result(timeout=300)
    training.optim_step(AdamParams(learning_rate=1e-2)).result(timeout=300)
    sampler = training.save_weights_and_get_sampling_client("w1")
    out = sampler.sample("sample", 2, SamplingParams(max_tokens=3, seed=0)).result(timeout=300)
    assert len(out.sequences) == 2
    names = [c.name for c in training.list_checkpoints().result(timeout=60)]
    assert "w1" in names
    # The sampler's model is usable from a fresh ServiceClient too.
    again = service.create_sampling_client(model_path=sampler.model)
    assert len(again.sample("x", 1, {"max_tokens": 2}).result(timeout=300).sequences) == 1


def test_save_and_load_state_restores_the_step(service: ServiceClient) -> None:
    training = service.create_lora_training_client(TEXT_MODEL, rank=4, seed=5)
    datum = _datum(training, "state round trip")
    training.forward_backward([datum])
    training.optim_step(AdamParams(learning_rate=1e-2))
    saved = training.save_state("s1").result(timeout=300)
    assert saved.kind == "state" and saved.step == 1
    training.forward_backward([datum])
    training.optim_step(AdamParams(learning_rate=1e-2)).result(timeout=300)
    loaded = training.load_state("s1").result(timeout=300)
    assert loaded.step == 1


def test_unknown_run_is_a_not_found_error(server: str) -> None:
    with wc.Workbench(base_url=server, retry_policy=FAST) as wb, pytest.raises(wc.NotFoundError):
        wb.training.get_run("no-such-run")


def test_a_datum_with_mismatched_lengths_is_a_4xx_naming_the_field(
    service: ServiceClient,
) -> None:
    training = service.create_lora_training_client(TEXT_MODEL, rank=4, seed=9)
    bad = Datum(model_input=ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [1]})
    with pytest.raises(wc.APIStatusError) as info:
        training.forward_backward([bad]).result(timeout=60)
    assert 400 <= info.value.status_code < 500
    assert info.value.param and "data" in info.value.param


def test_steps_are_logged_to_the_active_workbench_tracker_run(
    service: ServiceClient, tmp_path: Any
) -> None:
    wt = pytest.importorskip(
        "workbench_tracker", reason="workbench-tracker (the optional 'tracker' extra) is absent"
    )
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    run = wt.init(project="client-hook", store=url, capture_env=False)
    try:
        # No tracker_run passed: the client finds the tracker's active run by itself.
        training = service.create_lora_training_client(TEXT_MODEL, rank=2, seed=11)
        datum = _datum(training, "log me to the tracker")
        losses = []
        for _ in range(3):
            fb = training.forward_backward([datum])
            training.optim_step(AdamParams(learning_rate=2e-2)).result(timeout=300)
            losses.append(fb.result(timeout=300).loss)
    finally:
        wt.finish()
    got = wt.Api(url).run(run.id)
    steps, values = got.metric("loss")
    assert steps == [1, 2, 3]
    assert values == pytest.approx(losses)
    assert got.metric("learning_rate")[1] == pytest.approx([2e-2] * 3)


def test_forward_backward_output_has_tinkers_metrics_and_loss_fn_outputs(
    service: ServiceClient,
) -> None:
    training = service.create_lora_training_client(TEXT_MODEL, rank=2, seed=13)
    ids = training.get_tokenizer().encode("weights pick the tokens that count")
    n = len(ids) - 1
    weights = [0.0] * (n // 2) + [1.0] * (n - n // 2)
    datum = Datum(
        model_input=ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": ids[1:], "weights": weights},
    )
    out = training.forward_backward([datum]).result(timeout=300)
    lps = out.loss_fn_outputs[0]["logprobs"]
    assert len(lps) == n
    expected_sum = -sum(w * lp for w, lp in zip(weights, lps, strict=True))
    assert out.metrics["loss:sum"] == pytest.approx(expected_sum, rel=1e-5)
    # The server's loss is the weighted mean of the same numbers.
    assert (
        out.metrics["loss:mean"] == out.loss == pytest.approx(expected_sum / sum(weights), rel=1e-4)
    )


def test_every_high_level_method_has_an_async_variant() -> None:
    import inspect

    from workbench_client import SamplingClient

    skip = {"close"}
    for cls in (ServiceClient, TrainingClient, SamplingClient):
        for name, fn in vars(cls).items():
            if name.startswith("_") or name.endswith("_async") or name in skip:
                continue
            if not inspect.isfunction(fn):
                continue
            twin = getattr(cls, f"{name}_async", None)
            assert twin is not None and inspect.iscoroutinefunction(twin), f"{cls.__name__}.{name}"


async def test_async_variants_of_info_tokenizer_and_checkpoints(service: ServiceClient) -> None:
    first = await service.create_lora_training_client_async(TEXT_MODEL, rank=2, seed=21)
    training = await service.create_training_client_async(first.run_id)
    tok = await training.get_tokenizer_async()
    ids = tok.encode("async all the way")
    datum = Datum(
        model_input=ModelInput.from_ints(ids[:-1]), loss_fn_inputs={"target_tokens": ids[1:]}
    )
    await training.forward_backward_async([datum])
    await training.optim_step_async(AdamParams(learning_rate=1e-2))
    saved = await (await training.save_weights_for_sampler_async("a1"))
    listed = await (await training.list_checkpoints_async())
    info = await training.get_info_async()
    assert info.id == first.run_id and info.step == 1
    assert [c.name for c in listed] == [saved.name] == ["a1"]
    sampler = await training.save_weights_and_get_sampling_client_async("a2")
    out = await sampler.sample_async("async", 1, SamplingParams(max_tokens=2))
    assert len(out.sequences) == 1
    lps = await sampler.compute_logprobs_async(ids)
    assert len(lps) == len(ids)
