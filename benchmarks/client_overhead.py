"""Per-request overhead of workbench_client against raw httpx.AsyncClient.

Both talk to the same real workbench-serving server (in a subprocess, so only client work runs
in this process) and send the same request: GET /api/v1/capabilities, the cheapest endpoint, so
the client's own cost (pipeline, retry wrapper, header building, pydantic parsing) is what shows.
The raw anchor also decodes the JSON. Rounds alternate between the two to cancel drift.

Prints the ratio client / raw (goal <= 1.25x) and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from workbench_client import AsyncWorkbench

LAUNCH = """
import sys, uvicorn
from workbench_serving.app import create_app
from workbench_serving.settings import ServingSettings
models = [m for m in sys.argv[2].split(",") if m]
s = ServingSettings(models=models, training_models=[])
uvicorn.run(create_app(s), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

ROUNDS = 10
PER_ROUND = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(models: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ)
    env.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="wb-bench-"))
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(port), models], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server exited during startup")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become ready")


async def main() -> None:
    proc, url = start_server(os.environ.get("WB_BENCH_MODELS", "tiny-llama"))
    try:
        raw = httpx.AsyncClient(base_url=url, timeout=30)
        wb = AsyncWorkbench(base_url=url)

        async def run_raw(n: int) -> float:
            t = time.perf_counter()
            for _ in range(n):
                r = await raw.get("/api/v1/capabilities", headers={"Accept": "application/json"})
                r.raise_for_status()
                r.json()
            return time.perf_counter() - t

        async def run_client(n: int) -> float:
            t = time.perf_counter()
            for _ in range(n):
                await wb.service.capabilities()
            return time.perf_counter() - t

        await run_raw(50)  # warm both pools
        await run_client(50)
        raw_total = client_total = 0.0
        for _ in range(ROUNDS):
            raw_total += await run_raw(PER_ROUND)
            client_total += await run_client(PER_ROUND)
        n = ROUNDS * PER_ROUND
        raw_us, client_us = raw_total / n * 1e6, client_total / n * 1e6
        print(f"client_overhead: {n} GET capabilities each, sequential")
        print(f"  raw httpx.AsyncClient : {raw_us:8.1f} us/request")
        print(f"  workbench_client      : {client_us:8.1f} us/request")
        print(f"  overhead              : {client_us - raw_us:8.1f} us/request")
        print(f"  ratio client/raw      : {client_us / raw_us:.3f}x (goal <= 1.25x)")
        await raw.aclose()
        await wb.close()
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
