"""What composing costs: a request through ``workbench dev`` vs the same app on its own.

The dev server puts serving behind a root mount (after its own routes and the /tracker and
/agent mounts) and the tracker behind a /tracker mount, plus its API-key middleware when keys
are set. This measures the per-request price of that routing, in process over ASGI (no sockets,
so the ratio isolates the composition), for a serving route and a tracker route.

Anchor: the same request sent to the sub-app alone, measured in the same run.
Prints ratio = composed time / alone time (1.00 = free).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

N = int(os.environ.get("BENCH_N", "1500"))
ROUNDS = 5


async def _timed(client: Any, path: str, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        resp = await client.get(path)
        if resp.status_code != 200:
            raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:200]}")
    return (time.perf_counter() - t0) / n


async def main() -> None:
    os.environ.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="wb-bench-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import httpx

    from workbench_devserver import DevServerSettings, build_components, create_app

    # the parts alone (each with its own lifespan) and the composition of fresh parts
    alone = {c.name: c for c in build_components(DevServerSettings())}
    composed = create_app(DevServerSettings())
    cases = [
        (
            "serving GET /api/v1/capabilities",
            "serving",
            "/api/v1/capabilities",
            "/api/v1/capabilities",
        ),
        ("tracker GET /api/projects", "tracker", "/api/projects", "/tracker/api/projects"),
    ]
    async with composed.router.lifespan_context(composed):
        for label, part, alone_path, composed_path in cases:
            sub = alone[part].app
            async with sub.router.lifespan_context(sub):
                t_alone = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=sub), base_url="http://bench"
                )
                t_comp = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=composed), base_url="http://bench"
                )
                async with t_alone, t_comp:
                    await _timed(t_alone, alone_path, 50)  # warm both
                    await _timed(t_comp, composed_path, 50)
                    a, c = [], []
                    for _ in range(ROUNDS):  # interleaved, so drift hits both equally
                        a.append(await _timed(t_alone, alone_path, N // ROUNDS))
                        c.append(await _timed(t_comp, composed_path, N // ROUNDS))
            ma, mc = statistics.median(a), statistics.median(c)
            print(
                f"{label}: alone {ma * 1e6:8.1f} us/req  composed {mc * 1e6:8.1f} us/req  "
                f"ratio {mc / ma:.2f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
