"""LoRA training through the client, logged live to the tracker that ``workbench dev`` serves."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wb_integration import DevServer

pytestmark = pytest.mark.slow


@pytest.fixture
def tracker_home(devserver: DevServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Log from this process into the server's own store (local-first: one SQLite file)."""
    monkeypatch.setenv("WORKBENCH_HOME", str(devserver.home))
    monkeypatch.delenv("WORKBENCH_TRACKER_URL", raising=False)
    yield devserver.home


def test_training_logs_loss_live_and_stores_the_checkpoint_with_lineage(
    devserver: DevServer, tracker_home: Path, tmp_path: Path
) -> None:
    import workbench_tracker as wt
    from workbench_client import ServiceClient
    from workbench_tracker.artifacts import artifact_store_for

    service = ServiceClient(base_url=devserver.base_url)
    run = wt.init(project="it-training", name="lora", config={"rank": 4})
    trainer = service.create_lora_training_client("tiny-llama", rank=4, seed=0, tracker_run=run)
    tok = trainer.get_tokenizer()
    ids = tok.encode("The robot paints the sky every day.")
    datum = {
        "model_input": {"chunks": [{"tokens": ids[:-1]}]},
        "loss_fn_inputs": {"target_tokens": ids[1:]},
    }
    losses = []
    for _ in range(4):
        losses.append(trainer.forward_backward([datum]).result().loss)
        assert trainer.optim_step({"learning_rate": 1e-2}).result().step == len(losses)
    sampler = trainer.save_weights_and_get_sampling_client("it-final")
    out = sampler.sample("The robot", 1, {"max_tokens": 4, "temperature": 0.0}).result()
    assert out.sequences[0].tokens

    manifest = tmp_path / "checkpoint.json"
    manifest.write_text(json.dumps({"model_name": sampler.model}))
    version = run.log_artifact(manifest, "it-lora", "model")
    run.finish()

    # the loss is in the tracker, served by the dev server's viewer over HTTP
    with httpx.Client(base_url=f"{devserver.base_url}/tracker/api", timeout=30) as http:
        deadline = time.monotonic() + 30
        while True:
            series = http.get(f"/runs/{run.id}/series", params={"key": "loss"})
            if series.status_code == 200 and len(series.json()["steps"]) == 4:
                break
            assert time.monotonic() < deadline, series.text
            time.sleep(0.3)
        values = series.json()["values"]
        assert values == pytest.approx(losses, rel=1e-5)
        listed = http.get("/runs", params={"project": "it-training"}).json()
        assert run.id in json.dumps(listed)

    graph = artifact_store_for(run).lineage("it-training", run_id=run.id)
    text = json.dumps(graph)
    assert run.id in text and "it-lora" in text
    assert version.ref.startswith("it-lora:")


def test_training_rejects_an_unknown_base_model_naming_the_field(devserver: DevServer) -> None:
    resp = httpx.post(
        f"{devserver.base_url}/api/v1/training/runs", json={"base_model": "no-such-model"}
    )
    assert 400 <= resp.status_code < 500
    assert resp.json()["error"]["param"] == "base_model"
