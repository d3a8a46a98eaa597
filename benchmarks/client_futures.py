"""1,000 concurrent futures through the sync API, with a bounded number of threads.

``SamplingClient.sample`` returns an ``APIFuture`` at once; all 1,000 calls run as tasks on the
client's single loop thread (at most ``max_connections`` in flight). The anchor is the usual
sync alternative: a thread per in-flight call (a 1,000-worker ThreadPoolExecutor over one
``httpx.Client`` with the same 64-connection limit). Both send the same 1,000 sampling requests
(max_tokens=1) to the same real server, run in a subprocess so only client threads are counted.

Prints the peak thread count of each, the wall-time ratio futures / threads, and exits 0.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx

from workbench_client import RetryConfig, ServiceClient
from workbench_client.types import SamplingParams

LAUNCH = """
import sys, uvicorn
from workbench_serving.app import create_app
from workbench_serving.settings import ServingSettings
s = ServingSettings(models=["tiny-llama"], training_models=[])
uvicorn.run(create_app(s), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

N = 1000
CONNECTIONS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ)
    env.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="wb-bench-"))
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(port)], env=env)
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


class PeakThreads:
    """Samples threading.active_count() every millisecond while active."""

    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> PeakThreads:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak -= 1  # the watcher itself


def main() -> None:
    proc, url = start_server()
    body = {"model": "tiny-llama", "prompt": "Hi", "sampling_params": {"max_tokens": 1}}
    try:
        service = ServiceClient(base_url=url, retry_config=RetryConfig(max_connections=CONNECTIONS))
        sampler = service.create_sampling_client(base_model="tiny-llama")
        sampler.sample("warm up", 1, SamplingParams(max_tokens=1)).result()

        with PeakThreads() as fut_threads:
            t = time.perf_counter()
            futures = [sampler.sample("Hi", 1, SamplingParams(max_tokens=1)) for _ in range(N)]
            results = [f.result(timeout=600) for f in futures]
            fut_time = time.perf_counter() - t
        assert all(len(r.sequences) == 1 for r in results)

        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        with httpx.Client(base_url=url, timeout=600, limits=limits) as http:

            def one() -> int:
                r = http.post("/api/v1/sample", json=body)
                r.raise_for_status()
                return len(r.json()["sequences"])

            one()
            with PeakThreads() as pool_threads:
                t = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(max_workers=N) as pool:
                    counts = list(pool.map(lambda _: one(), range(N)))
                pool_time = time.perf_counter() - t
        assert counts == [1] * N

        print(
            f"client_futures: {N} concurrent sampling calls (max_tokens=1), {CONNECTIONS} connections"
        )
        print(f"  APIFuture via the sync API : {fut_time:6.2f} s, peak threads {fut_threads.peak}")
        print(
            f"  thread per call (anchor)   : {pool_time:6.2f} s, peak threads {pool_threads.peak}"
        )
        print(f"  time ratio futures/threads : {fut_time / pool_time:.3f}x")
        print(f"  peak thread ratio          : {fut_threads.peak / pool_threads.peak:.3f}x")
        service.close()
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
