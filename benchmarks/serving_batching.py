"""Throughput of the serving API at 32 concurrent clients: dynamic batching vs one at a time.

Anchor: the same server and engine, with the clients behind ``asyncio.Semaphore(1)`` so exactly
one request is in flight (what a server without batching does). Both phases run in this process
against one ``workbench serve`` subprocess on tiny-llama (CPU), alternating for ROUNDS rounds
and keeping the best round of each (the machine is shared). Goal: >= 4x.

Prints ``serving_batching: ratio=<batched rps / serial rps>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

CLIENTS = 32
REQUESTS_PER_CLIENT = 3
ROUNDS = 2
MAX_TOKENS = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    env.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="wb-bench-"))
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


async def run_phase(base_url: str, serial: bool) -> float:
    """Requests per second for CLIENTS clients each sending REQUESTS_PER_CLIENT samples."""
    gate = asyncio.Semaphore(1) if serial else None
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as c:

        async def one(i: int) -> None:
            body = {
                "model": "tiny-llama",
                "prompt": f"client {i} asks about the weather",
                "sampling_params": {"max_tokens": MAX_TOKENS, "temperature": 0},
            }
            if gate is None:
                r = await c.post("/api/v1/sample", json=body)
            else:
                async with gate:
                    r = await c.post("/api/v1/sample", json=body)
            r.raise_for_status()

        async def client(k: int) -> None:
            for j in range(REQUESTS_PER_CLIENT):
                await one(k * REQUESTS_PER_CLIENT + j)

        await one(-1)  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(CLIENTS)))
        elapsed = time.perf_counter() - start
    return CLIENTS * REQUESTS_PER_CLIENT / elapsed


def batch_stats(base_url: str) -> tuple[float, float]:
    """(batches run, items run) so far, from the server's /metrics."""
    values = {"workbench_batch_size_count": 0.0, "workbench_batch_size_sum": 0.0}
    with httpx.Client(base_url=base_url) as c:
        for line in c.get("/metrics").text.splitlines():
            name = line.split("{", 1)[0]
            if name in values:
                values[name] += float(line.rsplit(" ", 1)[1])
    return values["workbench_batch_size_count"], values["workbench_batch_size_sum"]


def main() -> int:
    port = free_port()
    batching = {"max_batch_size": CLIENTS, "max_wait_ms": 10, "max_queue_size": 1024}
    proc = start_server(port, {"WORKBENCH_BATCHING": json.dumps(batching)})
    try:
        base = f"http://127.0.0.1:{port}"
        # Alternate the phases and keep each one's best round: the machine is shared, and a
        # burst of someone else's load should not decide the ratio.
        serial_runs, batched_runs = [], []
        batches = items = 0.0
        for _ in range(ROUNDS):
            serial_runs.append(asyncio.run(run_phase(base, serial=True)))
            before = batch_stats(base)
            batched_runs.append(asyncio.run(run_phase(base, serial=False)))
            after = batch_stats(base)
            batches += after[0] - before[0]
            items += after[1] - before[1]
        serial, batched = max(serial_runs), max(batched_runs)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    mean_batch = items / batches if batches else float("nan")
    print(f"serving_batching: one-at-a-time {serial:.1f} req/s (anchor)")
    print(f"serving_batching: dynamic batching {batched:.1f} req/s at {CLIENTS} clients")
    print(f"serving_batching: mean batch size while batching {mean_batch:.1f}")
    print(f"serving_batching: ratio={batched / serial:.2f}x (goal >= 4x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
