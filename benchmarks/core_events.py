"""EventBus publish-to-delivery throughput against a bare asyncio.Queue per subscriber.

Anchor: the same number of events pushed with ``put_nowait`` into one unbounded
``asyncio.Queue`` per subscriber and read by the same consumer loop. The bus does more per event
(sequence numbers, a timestamp, bounded history, bounded buffers with gap accounting, thread-safe
wake-ups), so the goal is >= 0.5x the bare queue. Prints the figures and the ratios; exits 0.

Run: ``python benchmarks/core_events.py`` (also run by ``nox -s bench``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from workbench_core.events import GAP, EventBus, Subscription

BURST = 64  # events published between yields to the loop (a token stream, a metrics batch)
ROUNDS = 5
GOAL = 0.5


async def _consume_queue(q: asyncio.Queue[tuple[str, int, str, int]], n: int) -> int:
    got = gaps = 0
    while got < n:
        ev = await q.get()
        if ev[2] == GAP:
            gaps += 1
        got += 1
    return gaps


async def bench_queue(subscribers: int, events: int) -> float:
    queues: list[asyncio.Queue[tuple[str, int, str, int]]] = [
        asyncio.Queue() for _ in range(subscribers)
    ]
    consumers = [asyncio.create_task(_consume_queue(q, events)) for q in queues]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for i in range(events):
        # What a minimal hand-rolled fan-out would build per event.
        ev = ("topic", i + 1, "step", i)
        for q in queues:
            q.put_nowait(ev)
        if i % BURST == BURST - 1:
            await asyncio.sleep(0)
    await asyncio.gather(*consumers)
    return time.perf_counter() - start


async def _consume_sub(sub: Subscription, n: int) -> int:
    got = gaps = 0
    async for ev in sub:
        if ev.type == GAP:
            gaps += 1
        got += 1
        if got >= n:
            break
    return gaps


async def bench_bus(subscribers: int, events: int) -> float:
    bus = EventBus(buffer_size=1024, history_size=1024)
    subs = [bus.subscribe("topic") for _ in range(subscribers)]
    consumers = [asyncio.create_task(_consume_sub(s, events)) for s in subs]
    await asyncio.sleep(0)
    publish = bus.publish
    start = time.perf_counter()
    for i in range(events):
        publish("topic", "step", i)
        if i % BURST == BURST - 1:
            await asyncio.sleep(0)
    gaps = await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - start
    if any(gaps):  # a gap would mean we measured dropping, not delivering
        raise SystemExit("benchmark invalid: a subscriber overflowed")
    return elapsed


async def bench_queue_thread(subscribers: int, events: int) -> float:
    """Publisher in a worker thread: the usual hand-off is call_soon_threadsafe per item."""
    loop = asyncio.get_running_loop()
    queues: list[asyncio.Queue[tuple[str, int, str, int]]] = [
        asyncio.Queue() for _ in range(subscribers)
    ]
    consumers = [asyncio.create_task(_consume_queue(q, events)) for q in queues]
    await asyncio.sleep(0)

    def produce() -> None:
        for i in range(events):
            ev = ("topic", i + 1, "step", i)
            for q in queues:
                loop.call_soon_threadsafe(q.put_nowait, ev)

    start = time.perf_counter()
    thread = threading.Thread(target=produce)
    thread.start()
    await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - start
    thread.join()
    return elapsed


async def bench_bus_thread(subscribers: int, events: int) -> float:
    """Publisher in a worker thread; the bus wakes a parked reader once per batch."""
    # Buffers as large as the run: the anchor's queues are unbounded, so no event may drop.
    bus = EventBus(buffer_size=events, history_size=1024)
    subs = [bus.subscribe("topic") for _ in range(subscribers)]
    consumers = [asyncio.create_task(_consume_sub(s, events)) for s in subs]
    await asyncio.sleep(0)

    def produce() -> None:
        for i in range(events):
            bus.publish("topic", "step", i)

    start = time.perf_counter()
    thread = threading.Thread(target=produce)
    thread.start()
    gaps = await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - start
    thread.join()
    if any(gaps):
        raise SystemExit("benchmark invalid: a subscriber overflowed")
    return elapsed


Bench = Callable[[int, int], Coroutine[Any, Any, float]]


def best_pair(anchor: Bench, bus: Bench, subscribers: int, events: int) -> tuple[float, float]:
    """Best time of each, with the runs interleaved so a noisy neighbour hits both alike."""
    a_times: list[float] = []
    b_times: list[float] = []
    for _ in range(ROUNDS):
        a_times.append(asyncio.run(anchor(subscribers, events)))
        b_times.append(asyncio.run(bus(subscribers, events)))
    return min(a_times), min(b_times)


def main() -> int:
    print(
        "EventBus vs bare asyncio.Queue per subscriber (best of 5 interleaved, same consumer loop)"
    )
    print(f"{'subscribers':>11} {'events':>7} {'queue dlv/s':>12} {'bus dlv/s':>12} {'ratio':>6}")
    worst = float("inf")  # the goal applies to the same-loop rows
    for subscribers, events in ((1, 50_000), (100, 1_000)):
        deliveries = subscribers * events
        q, b = best_pair(bench_queue, bench_bus, subscribers, events)
        ratio = q / b
        worst = min(worst, ratio)
        print(
            f"{subscribers:>11} {events:>7} {deliveries / q:>12,.0f} {deliveries / b:>12,.0f} "
            f"{ratio:>5.2f}x"
        )
    print("publisher in a worker thread (anchor: call_soon_threadsafe(queue.put_nowait) per item)")
    for subscribers, events in ((1, 50_000), (10, 5_000)):
        deliveries = subscribers * events
        q, b = best_pair(bench_queue_thread, bench_bus_thread, subscribers, events)
        print(
            f"{subscribers:>11} {events:>7} {deliveries / q:>12,.0f} {deliveries / b:>12,.0f} "
            f"{q / b:>5.2f}x"
        )
    verdict = "meets" if worst >= GOAL else "MISSES"
    print(f"worst ratio {worst:.2f}x {verdict} the goal of >= {GOAL}x the bare queue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
