"""Batched sampling throughput of TextEngine against per-request ``model.generate``.

Anchor: the same 16 requests (different prompts, temperatures, top-p and seeds, 32 new tokens)
sampled one at a time with transformers' ``model.generate`` on the same tiny-llama preset,
which is what a server without a batching loop does. Measured: one ``TextEngine.run_batch``
call over all 16, which shares each forward pass between them while keeping every request's
own parameters and generator. Also shown: the engine fed one request per call, to separate
the loop's own cost from the gain of batching. Throughput is generated tokens per second;
the ratio is batched / anchor. Exits 0.

Run: ``python benchmarks/serving_engines_sampling.py`` (also run by ``nox -s bench``).
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if not os.environ.get("WORKBENCH_MODELS_DIR"):
    os.environ["WORKBENCH_MODELS_DIR"] = tempfile.mkdtemp(prefix="wb-bench-models-")

import torch

from workbench_serving.engines import SampleItem, SampleResult, TextEngine

REQUESTS = 16
NEW_TOKENS = 32
ROUNDS = 3

PROMPTS = [
    "Once upon a time there was a little robot",
    "The quick brown fox",
    "Machine learning models are trained on data.",
    "Hello! How are you today?",
    "Please write a short poem about the ocean.",
    "The sun rose over the mountains and",
    "It was the best of times,",
    "Describe this image.",
]


def items(engine: TextEngine) -> list[SampleItem]:
    out = []
    for i in range(REQUESTS):
        out.append(
            SampleItem(
                prompt_tokens=engine.encode_text(PROMPTS[i % len(PROMPTS)]),
                max_tokens=NEW_TOKENS,
                temperature=0.6 + 0.1 * (i % 5),
                top_p=0.9 if i % 2 else 1.0,
                seed=i,
            )
        )
    return out


def count(results: list[object]) -> int:
    total = 0
    for r in results:
        assert isinstance(r, SampleResult), r
        total += sum(len(s.tokens) for s in r.sequences)
    return total


def run_generate(engine: TextEngine, reqs: list[SampleItem]) -> tuple[float, int]:
    model, tokens = engine.model, 0
    t0 = time.perf_counter()
    for req in reqs:
        torch.manual_seed(req.seed or 0)
        ids = torch.tensor([req.prompt_tokens])
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=req.temperature,
                top_p=req.top_p,
                top_k=0,
                max_new_tokens=req.max_tokens,
                pad_token_id=engine.tokenizer.pad_token_id,
            )
        tokens += out.shape[1] - ids.shape[1]
    return time.perf_counter() - t0, tokens


def run_engine_one_by_one(engine: TextEngine, reqs: list[SampleItem]) -> tuple[float, int]:
    t0 = time.perf_counter()
    results = [engine.run_batch([r])[0] for r in reqs]
    return time.perf_counter() - t0, count(results)


def run_engine_batched(engine: TextEngine, reqs: list[SampleItem]) -> tuple[float, int]:
    t0 = time.perf_counter()
    results = engine.run_batch(reqs)
    return time.perf_counter() - t0, count(list(results))


def main() -> None:
    # One intra-op thread: the tiny model is all overhead, and timings on a shared 2-core
    # machine are steadier this way. Both sides run under the same setting.
    torch.set_num_threads(1)
    engine = TextEngine("tiny-llama", device="cpu", dtype="float32")
    engine.load()
    reqs = items(engine)
    run_engine_batched(engine, reqs[:2])  # warm-up
    run_generate(engine, reqs[:2])
    best: dict[str, float] = {}
    for _ in range(ROUNDS):  # interleaved rounds, best throughput of each
        for name, fn in (
            ("generate, one request at a time (anchor)", run_generate),
            ("TextEngine, one request per run_batch", run_engine_one_by_one),
            ("TextEngine, 16 requests in one run_batch", run_engine_batched),
        ):
            seconds, tokens = fn(engine, reqs)
            best[name] = max(best.get(name, 0.0), tokens / seconds)
    anchor = best["generate, one request at a time (anchor)"]
    for name, tps in best.items():
        print(f"{name:45s} {tps:9.1f} tokens/s  ratio {tps / anchor:5.2f}x")
    batched = best["TextEngine, 16 requests in one run_batch"]
    print(f"ratio: batched engine / per-request generate = {batched / anchor:.2f}x")


if __name__ == "__main__":
    main()
