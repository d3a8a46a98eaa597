"""LoRA training over HTTP: the loss falls, checkpoints serve as models, retries apply once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from workbench_core.protocol import (
    Checkpoint,
    CheckpointList,
    ForwardBackwardResponse,
    OptimStepResponse,
    TrainingRun,
)

TEXT = "the quick brown fox jumps over the lazy dog. "


def _datum(c: httpx.Client) -> dict[str, Any]:
    ids = c.post(
        "/api/v1/compute_logprobs",
        json={"model": "tiny-llama", "prompt": {"chunks": [{"tokens": [1]}]}},
    )
    assert ids.status_code == 200
    tok = c.post(
        "/api/v1/sample",
        json={"model": "tiny-llama", "prompt": TEXT * 2, "sampling_params": {"max_tokens": 1}},
    )
    n = tok.json()["prompt_tokens"]
    # Build the datum from the exported tokenizer so the text is tokenized like the server does.
    from tokenizers import Tokenizer

    info = c.get("/api/v1/models/tiny-llama/tokenizer").json()
    tokens = Tokenizer.from_str(info["tokenizer_json"]).encode(TEXT * 2).ids
    assert abs(len(tokens) - n) <= 1
    return {
        "model_input": {"chunks": [{"type": "encoded_text", "tokens": tokens[:-1]}]},
        "loss_fn_inputs": {"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    }


@pytest.fixture(scope="module")
def trained(server: Any) -> dict[str, Any]:
    """One run trained for a few steps and checkpointed (shared by the tests below)."""
    with server.client() as c:
        r = c.post("/api/v1/training/runs", json={"base_model": "tiny-llama", "rank": 8, "seed": 0})
        assert r.status_code == 200, r.text
        run = TrainingRun.model_validate(r.json())
        datum = _datum(c)
        losses = []
        for _ in range(8):
            fb = c.post(f"/api/v1/training/runs/{run.id}/forward_backward", json={"data": [datum]})
            assert fb.status_code == 200, fb.text
            losses.append(ForwardBackwardResponse.model_validate(fb.json()).loss)
            step = c.post(
                f"/api/v1/training/runs/{run.id}/optim_step",
                json={"adam_params": {"learning_rate": 0.01}},
            )
            assert step.status_code == 200, step.text
        ck = c.post(f"/api/v1/training/runs/{run.id}/checkpoints", json={"name": "final"})
        assert ck.status_code == 200, ck.text
        checkpoint = Checkpoint.model_validate(ck.json())
    return {"run": run, "losses": losses, "checkpoint": checkpoint, "datum": datum}


@pytest.mark.slow
def test_lora_run_lowers_the_loss_within_a_few_steps(trained: dict[str, Any]) -> None:
    losses = trained["losses"]
    assert losses[-1] < losses[0] * 0.95, losses


@pytest.mark.slow
def test_sampler_from_checkpoint_answers_differently_from_base(
    server: Any, trained: dict[str, Any]
) -> None:
    ck: Checkpoint = trained["checkpoint"]
    run: TrainingRun = trained["run"]
    with server.client() as c:
        sampler = c.post(f"/api/v1/training/runs/{run.id}/sampler", json={"checkpoint": "final"})
        assert sampler.status_code == 200, sampler.text
        name = sampler.json()["model_name"]
        assert name == ck.model_name
        body = {
            "prompt": "the quick brown",
            "sampling_params": {"max_tokens": 12, "temperature": 0},
        }
        base = c.post("/api/v1/sample", json={"model": "tiny-llama", **body}).json()
        tuned = c.post("/api/v1/sample", json={"model": name, **body}).json()
        listed = CheckpointList.model_validate(
            c.get(f"/api/v1/training/runs/{run.id}/checkpoints").json()
        )
    assert base["sequences"][0]["tokens"] != tuned["sequences"][0]["tokens"]
    assert [x.name for x in listed.checkpoints] == ["final"]


@pytest.mark.slow
def test_repeated_idempotency_key_does_not_rerun_optim_step(
    server: Any, trained: dict[str, Any]
) -> None:
    run: TrainingRun = trained["run"]
    url = f"/api/v1/training/runs/{run.id}/optim_step"
    with server.client() as c:
        c.post(
            f"/api/v1/training/runs/{run.id}/forward_backward", json={"data": [trained["datum"]]}
        )
        before = c.get(f"/api/v1/training/runs/{run.id}").json()["step"]
        headers = {"Idempotency-Key": f"step-{run.id}-once"}
        first = c.post(url, json={"adam_params": {"learning_rate": 0.001}}, headers=headers)
        second = c.post(url, json={"adam_params": {"learning_rate": 0.001}}, headers=headers)
        after = c.get(f"/api/v1/training/runs/{run.id}").json()["step"]
        conflict = c.post(url, json={"adam_params": {"learning_rate": 0.5}}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert (
        OptimStepResponse.model_validate(second.json()).step == first.json()["step"] == before + 1
    )
    assert second.headers.get("idempotent-replayed") == "true"
    assert after == before + 1
    assert conflict.status_code == 409
    assert conflict.json()["error"]["param"] == "Idempotency-Key"


@pytest.mark.slow
def test_concurrent_duplicates_wait_for_the_first_and_share_its_outcome(
    server: Any, trained: dict[str, Any]
) -> None:
    run: TrainingRun = trained["run"]

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as c:
            before = (await c.get(f"/api/v1/training/runs/{run.id}")).json()["step"]
            headers = {"Idempotency-Key": f"concurrent-{run.id}"}
            rs = await asyncio.gather(
                *(
                    c.post(
                        f"/api/v1/training/runs/{run.id}/optim_step",
                        json={"adam_params": {"learning_rate": 0.001}},
                        headers=headers,
                    )
                    for _ in range(4)
                )
            )
            after = (await c.get(f"/api/v1/training/runs/{run.id}")).json()["step"]
            assert after == before + 1
            return rs

    responses = asyncio.run(go())
    assert len({r.json()["step"] for r in responses}) == 1


def test_training_validation_names_the_field(server: Any) -> None:
    with server.client() as c:
        r = c.post("/api/v1/training/runs", json={"base_model": "tiny-sd"})
        assert r.status_code == 404 and r.json()["error"]["param"] == "base_model"
        r = c.post("/api/v1/training/runs", json={"base_model": "tiny-llama", "rank": 0})
        assert r.status_code == 422 and r.json()["error"]["param"] == "rank"
        r = c.post("/api/v1/training/runs/run_nope/optim_step", json={})
        assert r.status_code == 404 and r.json()["error"]["param"] == "run_id"
        run = c.post("/api/v1/training/runs", json={"base_model": "tiny-llama"}).json()
        bad = {
            "data": [
                {
                    "model_input": {"chunks": [{"tokens": [1, 2, 3]}]},
                    "loss_fn_inputs": {"target_tokens": [2, 3]},
                }
            ]
        }
        r = c.post(f"/api/v1/training/runs/{run['id']}/forward_backward", json=bad)
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "data.0.loss_fn_inputs.target_tokens"


@pytest.mark.slow
def test_checkpoints_saved_earlier_are_served_after_a_restart(
    server: Any, server_factory: Any, trained: dict[str, Any]
) -> None:
    from workbench_serving.settings import ServingSettings

    name = trained["checkpoint"].model_name
    restarted = server_factory(
        ServingSettings(models=["tiny-llama"], training_models=["tiny-llama"], device="cpu")
    )
    try:
        with restarted.client() as c:
            ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
            assert name in ids
            r = c.post(
                "/v1/completions", json={"model": name, "prompt": "the quick", "max_tokens": 3}
            )
            assert r.status_code == 200, r.text
    finally:
        restarted.stop()
