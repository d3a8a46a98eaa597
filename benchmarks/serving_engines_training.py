"""TrainingEngine step cost against a hand-written peft training loop on the same model.

Anchor: a plain loop on a ``peft.get_peft_model`` copy of tiny-llama: one forward pass over
8 right-padded sequences, weighted cross-entropy, ``backward``, ``AdamW.step``. Measured: the
same work through ``TrainingEngine.forward_backward`` + ``optim_step``, which adds input
validation, the shared-base adapter switch (``set_adapter`` under the engine lock), per-token
logprobs returned as Python lists, and per-call Adam parameters. Both run 30 steps after a
warm-up; the ratio is engine steps/s over anchor steps/s (1.0 = no overhead). Exits 0.

Run: ``python benchmarks/serving_engines_training.py`` (also run by ``nox -s bench``).
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# peft calls a transformers method that is deprecated; not this benchmark's concern.
warnings.filterwarnings("ignore", category=FutureWarning)
if not os.environ.get("WORKBENCH_MODELS_DIR"):
    os.environ["WORKBENCH_MODELS_DIR"] = tempfile.mkdtemp(prefix="wb-bench-models-")

import torch  # noqa: E402

from workbench_serving.engines import (  # noqa: E402
    AdamParams,
    TextEngine,
    TrainingDatum,
    TrainingEngine,
)

STEPS = 30
ROUNDS = 3
SENTENCES = [
    "The robot painted the sky blue every day of the week.",
    "Once upon a time there was a little robot who wanted to paint the sky.",
    "The baker said the sky should be golden like fresh bread.",
    "Machine learning models are trained on data.",
    "Greedy decoding always picks the most likely token.",
    "The ocean is wide, the ocean is deep.",
    "It was the best of times, it was the worst of times.",
    "There are two dogs playing in the park.",
]


def make_data(engine: TextEngine) -> list[TrainingDatum]:
    data = []
    for s in SENTENCES:
        toks = engine.encode_text(s)
        data.append(TrainingDatum(toks[:-1], toks[1:], [1.0] * (len(toks) - 1)))
    return data


def anchor_steps(path: object, data: list[TrainingDatum], steps: int) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(0)
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    width = max(len(d.tokens) for d in data)
    ids = torch.zeros((len(data), width), dtype=torch.long)
    tgt = torch.zeros_like(ids)
    w = torch.zeros((len(data), width))
    mask = torch.zeros_like(ids)
    for b, d in enumerate(data):
        n = len(d.tokens)
        ids[b, :n], tgt[b, :n] = torch.tensor(d.tokens), torch.tensor(d.target_tokens)
        w[b, :n], mask[b, :n] = torch.tensor(d.weights), 1
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        lp = torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        loss = -(lp * w).sum() / w.sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps / (time.perf_counter() - t0)


def engine_steps(trainer: TrainingEngine, data: list[TrainingDatum], steps: int) -> float:
    run = trainer.create_run(rank=8, seed=0)
    adam = AdamParams(learning_rate=1e-3)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.forward_backward(run, data)
        trainer.optim_step(run, adam)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)  # steadier on a shared 2-core machine; same for both sides
    text = TextEngine("tiny-llama", device="cpu", dtype="float32")
    text.load()
    trainer = TrainingEngine("tiny-llama", text_engine=text)
    data = make_data(text)
    anchor_steps(text.path, data, 3)  # warm-up
    engine_steps(trainer, data, 3)
    best_anchor = best_engine = 0.0
    for _ in range(ROUNDS):
        best_anchor = max(best_anchor, anchor_steps(text.path, data, STEPS))
        best_engine = max(best_engine, engine_steps(trainer, data, STEPS))
    print(f"plain peft loop (anchor)          {best_anchor:8.1f} steps/s")
    print(f"TrainingEngine fb + optim_step    {best_engine:8.1f} steps/s")
    print(f"ratio: engine / plain loop = {best_engine / best_anchor:.2f}x")


if __name__ == "__main__":
    main()
