"""End-to-end latency of one sample over HTTP against calling the engine directly.

Anchor: ``TextEngine.run_batch([item])`` in this process on tiny-llama (CPU). Measured: the same
request through a ``workbench serve`` subprocess (HTTP, validation, scheduler, device thread,
JSON) with ``max_wait_ms=0`` so no batching window is added. Requests are sequential, each with
the same prompt and greedy decoding, so both sides do identical model work. Goal: <= 1.3x.

Prints ``serving_http_overhead: ratio=<median HTTP latency / median direct latency>``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

N = 40
MAX_TOKENS = 16
PROMPT = "The quick brown fox jumps over the lazy dog"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-c",
        "from workbench_serving.cli import serve; serve()",
        "--port",
        str(port),
        "--model",
        "tiny-llama",
        "--training-model",
        "none",
        "--device",
        "cpu",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        while time.monotonic() < deadline:
            try:
                if c.get("/api/v1/readyz").status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("server exited during start-up")
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def measure(base_url: str) -> tuple[list[float], list[float]]:
    """Alternate direct and HTTP calls so both see the same machine load."""
    import torch

    from workbench_serving.engines.base import SampleItem
    from workbench_serving.engines.text import TextEngine

    torch.set_num_threads(1)  # like the server's process (OMP_NUM_THREADS=1)
    engine = TextEngine("tiny-llama", device="cpu", dtype="float32")
    engine.load()
    tokens = engine.encode_text(PROMPT)
    body = {
        "model": "tiny-llama",
        "prompt": PROMPT,
        "sampling_params": {"max_tokens": MAX_TOKENS, "temperature": 0},
    }
    direct: list[float] = []
    over_http: list[float] = []
    with httpx.Client(base_url=base_url, timeout=120) as c:
        for i in range(N + 3):
            item = SampleItem(prompt_tokens=list(tokens), max_tokens=MAX_TOKENS, temperature=0.0)
            t0 = time.perf_counter()
            (result,) = engine.run_batch([item])
            t1 = time.perf_counter()
            r = c.post("/api/v1/sample", json=body)
            t2 = time.perf_counter()
            assert not isinstance(result, BaseException), result
            r.raise_for_status()
            assert r.json()["sequences"][0]["tokens"] == result.sequences[0].tokens
            if i >= 3:
                direct.append(t1 - t0)
                over_http.append(t2 - t1)
    return direct, over_http


def main() -> int:
    home = os.environ.get("WORKBENCH_HOME") or tempfile.mkdtemp(prefix="wb-bench-")
    os.environ["WORKBENCH_HOME"] = home
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = {
        **os.environ,
        "WORKBENCH_BATCHING": json.dumps({"max_batch_size": 8, "max_wait_ms": 0}),
        "OMP_NUM_THREADS": "1",
    }
    port = free_port()
    proc = start_server(port, env)
    try:
        direct, over_http = measure(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    d, h = statistics.median(direct), statistics.median(over_http)
    print(f"serving_http_overhead: direct engine call median {d * 1000:.1f} ms (anchor)")
    print(f"serving_http_overhead: over HTTP median {h * 1000:.1f} ms")
    print(f"serving_http_overhead: ratio={h / d:.2f}x (goal <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
