"""Through a fault-injecting proxy (503, 429 + Retry-After, connection resets, dropped responses)
every call still succeeds, and a training run ends with the same losses, step for step, as a
clean run: each optim_step is applied exactly once thanks to the Idempotency-Key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _servers import FaultProxy
from conftest import TEXT_MODEL, TRAINING_MODELS

from workbench_client import AsyncWorkbench, RetryConfig, ServiceClient
from workbench_client.types import AdamParams, Datum, ModelInput, SamplingParams
from workbench_core.retry import RetryPolicy

pytestmark = pytest.mark.slow

# Many cheap attempts: with 30% faults, 12 attempts all failing has odds of 0.3**12.
MANY = RetryPolicy(max_attempts=12, initial_delay=0.001, max_delay=0.01, jitter=0.0)


@pytest.fixture()
def proxy(server: str) -> Iterator[FaultProxy]:
    port = int(server.rsplit(":", 1)[1])
    p = FaultProxy(port, fault_rate=0.3, seed=20261122).start()
    yield p
    p.stop()


def test_sampling_calls_all_succeed_through_faults(proxy: FaultProxy) -> None:
    service = ServiceClient(base_url=proxy.url, retry_policy=MANY)
    sampler = service.create_sampling_client(base_model=TEXT_MODEL)
    futures = [sampler.sample("Hello", 1, SamplingParams(max_tokens=2, seed=i)) for i in range(30)]
    results = [f.result(timeout=300) for f in futures]
    assert all(len(r.sequences) == 1 for r in results)
    # The proxy really did inject every kind of fault.
    assert all(proxy.counts[k] > 0 for k in FaultProxy.FAULTS), proxy.counts
    service.close()


async def test_async_reads_ride_out_faults(proxy: FaultProxy) -> None:
    async with AsyncWorkbench(base_url=proxy.url, retry_policy=MANY) as wb:
        for _ in range(15):
            caps = await wb.service.capabilities()
            assert any(m.name == TEXT_MODEL for m in caps.models)
    assert sum(proxy.counts[k] for k in FaultProxy.FAULTS) > 0


def _train(base_url: str, steps: int) -> tuple[list[float], list[int]]:
    service = ServiceClient(
        base_url=base_url, retry_policy=MANY, retry_config=RetryConfig(policy=MANY)
    )
    training = service.create_lora_training_client(TEXT_MODEL, rank=4, seed=1234)
    ids = training.get_tokenizer().encode("the quick brown fox jumps over the lazy dog")
    datum = Datum(
        model_input=ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": ids[1:], "weights": [1.0] * (len(ids) - 1)},
    )
    losses: list[float] = []
    step_ids: list[int] = []
    for _ in range(steps):
        # Submitted back to back without waiting: the client keeps them in order.
        fb = training.forward_backward([datum], "cross_entropy")
        st = training.optim_step(AdamParams(learning_rate=5e-2))
        losses.append(fb.result(timeout=300).loss)
        step_ids.append(st.result(timeout=300).step)
    service.close()
    return losses, step_ids


@pytest.mark.skipif(not TRAINING_MODELS, reason="the test server was started without training")
def test_training_through_faults_matches_a_clean_run_step_for_step(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    # Faults aimed at the training steps, half of them, so dropped optim_steps really happen.
    proxy = FaultProxy(
        port, fault_rate=0.5, seed=7, fault_paths=("forward_backward", "optim_step")
    ).start()
    try:
        clean_losses, clean_steps = _train(server, steps=5)
        faulty_losses, faulty_steps = _train(proxy.url, steps=5)
    finally:
        proxy.stop()
    assert clean_steps == [1, 2, 3, 4, 5]
    assert faulty_steps == clean_steps
    assert faulty_losses == pytest.approx(clean_losses, rel=1e-5, abs=1e-6)
    assert clean_losses[-1] < clean_losses[0]  # the steps really trained
    # A response was dropped after the server applied an optim_step, and it was still applied
    # once: the step ids above would skip otherwise.
    assert any(f == "drop" and "optim_step" in line for f, line in proxy.log), proxy.log
