"""events: fan-out, bounded buffers with gap markers, replay, close, thread-safe publish."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from workbench_core.aio import LoopThread
from workbench_core.events import GAP, Event, EventBus


async def collect(sub, n: int, timeout: float = 5.0) -> list[Event]:
    out: list[Event] = []

    async def run() -> None:
        async for ev in sub:
            out.append(ev)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_publish_fans_out_to_every_subscriber_in_order_with_seq_from_one() -> None:
    bus = EventBus()
    subs = [bus.subscribe("s") for _ in range(5)]
    for i in range(3):
        bus.publish("s", "step", {"i": i})
    for sub in subs:
        events = await collect(sub, 3)
        assert [e.seq for e in events] == [1, 2, 3]
        assert [e.data for e in events] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert all(e.topic == "s" and e.type == "step" for e in events)


async def test_topics_are_independent() -> None:
    bus = EventBus()
    a, b = bus.subscribe("a"), bus.subscribe("b")
    bus.publish("a", "x", 1)
    bus.publish("b", "x", 2)
    bus.publish("a", "x", 3)
    assert [e.data for e in a.drain()] == [1, 3]
    assert [(e.seq, e.data) for e in b.drain()] == [(1, 2)]


async def test_waiting_subscriber_is_woken_by_publish() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    task = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)
    assert not task.done()
    bus.publish("t", "hello", None)
    ev = await asyncio.wait_for(task, 2)
    assert ev.type == "hello"


async def test_slow_subscriber_gets_one_gap_then_newest_and_publisher_never_blocks() -> None:
    bus = EventBus(buffer_size=4)
    slow = bus.subscribe("t")
    fast = bus.subscribe("t")
    got_fast: list[int] = []
    for i in range(1, 101):
        bus.publish("t", "n", i)
        got_fast.extend(e.data for e in fast.drain())
        assert slow.pending <= 5  # bounded: 4 buffered + one pending gap marker
    assert got_fast == list(range(1, 101))
    events = slow.drain()
    assert events[0].type == GAP
    assert events[0].data == {"missed": 96}
    assert events[0].seq == 96  # the last event it stands for
    assert [e.data for e in events[1:]] == [97, 98, 99, 100]
    # After catching up, delivery is normal again with no further gap.
    bus.publish("t", "n", 101)
    assert [(e.type, e.data) for e in slow.drain()] == [("n", 101)]


async def test_per_subscriber_buffer_size_overrides_the_bus_default() -> None:
    bus = EventBus(buffer_size=2)
    big = bus.subscribe("t", buffer_size=100)
    small = bus.subscribe("t")
    for i in range(10):
        bus.publish("t", "n", i)
    assert [e.data for e in big.drain()] == list(range(10))
    assert [e.type for e in small.drain()] == [GAP, "n", "n"]
    with pytest.raises(ValueError, match="buffer_size"):
        bus.subscribe("t", buffer_size=0)


async def test_replay_from_last_seq_then_live_events() -> None:
    bus = EventBus()
    for i in range(1, 6):
        bus.publish("t", "n", i)
    sub = bus.subscribe("t", last_seq=3)
    bus.publish("t", "n", 6)
    events = await collect(sub, 3)
    assert [e.seq for e in events] == [4, 5, 6]


async def test_replay_all_with_last_seq_zero_and_nothing_with_none() -> None:
    bus = EventBus()
    for i in range(3):
        bus.publish("t", "n", i)
    assert [e.seq for e in bus.subscribe("t", last_seq=0).drain()] == [1, 2, 3]
    assert bus.subscribe("t").drain() == []
    assert bus.subscribe("t", last_seq=3).drain() == []


async def test_replay_beyond_history_starts_with_gap_counting_lost_events() -> None:
    bus = EventBus(history_size=3)
    for i in range(1, 11):
        bus.publish("t", "n", i)
    events = bus.subscribe("t", last_seq=2).drain()
    assert events[0].type == GAP and events[0].data == {"missed": 5}  # seqs 3..7 are gone
    assert events[0].seq == 7
    assert [e.seq for e in events[1:]] == [8, 9, 10]


async def test_close_topic_ends_subscribers_after_they_drain() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    waiting = bus.subscribe("t")
    task = asyncio.create_task(collect(waiting, 100))
    await asyncio.sleep(0)
    bus.publish("t", "n", 1)
    bus.close_topic("t")
    assert [e.data async for e in sub] == [1]
    # collect() asked for 100 events; iteration ended after the one published, no hang.
    assert [e.data for e in await task] == [1]
    assert bus.subscriber_count("t") == 0
    assert bus.is_closed("t")


async def test_waiting_subscriber_ends_when_topic_closes() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")

    async def consume() -> list[Event]:
        return [e async for e in sub]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    bus.close_topic("t")
    assert await asyncio.wait_for(task, 2) == []


async def test_late_subscriber_to_closed_topic_replays_then_ends() -> None:
    bus = EventBus()
    bus.publish("t", "n", 1)
    bus.publish("t", "n", 2)
    bus.close_topic("t")
    sub = bus.subscribe("t", last_seq=1)
    assert [e.seq async for e in sub] == [2]


async def test_publish_after_close_reopens_topic_and_continues_seq() -> None:
    bus = EventBus()
    bus.publish("t", "n", 1)
    bus.close_topic("t")
    sub = bus.subscribe("t")
    assert sub.closed
    ev = bus.publish("t", "n", 2)
    assert ev.seq == 2 and not bus.is_closed("t")


async def test_closed_topics_are_forgotten_beyond_the_bound() -> None:
    bus = EventBus(closed_topics=2)
    for name in "abc":
        bus.publish(name, "n", 1)
        bus.close_topic(name)
    assert sorted(bus.topics()) == ["b", "c"]


async def test_aclose_unsubscribes_and_ends_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    assert bus.subscriber_count("t") == 1
    await sub.aclose()
    assert bus.subscriber_count("t") == 0
    bus.publish("t", "n", 1)
    assert [e async for e in sub] == []


async def test_subscription_dropped_without_close_stops_receiving_and_is_freed() -> None:
    # e.g. a streaming response whose generator never started because the client left first.
    bus = EventBus()
    kept = bus.subscribe("t")
    dropped = bus.subscribe("t")
    ref = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert ref() is None
    bus.publish("t", "n", 1)
    assert bus.subscriber_count("t") == 1
    assert [e.data for e in kept.drain()] == [1]


async def test_async_context_manager_unsubscribes() -> None:
    bus = EventBus()
    async with bus.subscribe("t") as sub:
        bus.publish("t", "n", 1)
        assert (await sub.__anext__()).data == 1
    assert bus.subscriber_count("t") == 0


async def test_next_with_timeout_returns_none_when_idle_and_event_when_ready() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    assert await sub.next(timeout=0.01) is None
    assert await sub.next(timeout=0) is None
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, bus.publish, "t", "n", 5)
    ev = await sub.next(timeout=5)
    assert ev is not None and ev.data == 5


async def test_cancelled_waiter_does_not_lose_later_events() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    task = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    bus.publish("t", "n", 1)
    assert (await asyncio.wait_for(sub.__anext__(), 2)).data == 1


async def test_publish_from_worker_threads_wakes_subscriber_and_keeps_seq_order() -> None:
    bus = EventBus(buffer_size=10_000)
    sub = bus.subscribe("t")
    per_thread, threads_n = 500, 4

    def worker(k: int) -> None:
        for i in range(per_thread):
            bus.publish("t", "n", (k, i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
    consumer = asyncio.create_task(collect(sub, per_thread * threads_n, timeout=20))
    await asyncio.sleep(0)
    for t in threads:
        t.start()
    for t in threads:
        await asyncio.to_thread(t.join)
    events = await consumer
    assert [e.seq for e in events] == list(range(1, per_thread * threads_n + 1))
    for k in range(threads_n):
        assert [e.data[1] for e in events if e.data[0] == k] == list(range(per_thread))


async def test_overflow_under_a_racing_worker_thread_accounts_for_every_event() -> None:
    # The consumer reads without a lock while a thread floods a tiny buffer: every seq must be
    # either delivered or counted by a gap marker, in order, with nothing duplicated.
    bus = EventBus(buffer_size=8)
    sub = bus.subscribe("t")
    total = 20_000

    def flood() -> None:
        for i in range(total):
            bus.publish("t", "n", i)
        bus.close_topic("t")

    thread = threading.Thread(target=flood)
    thread.start()
    accounted, last, gaps = 0, 0, 0
    async for ev in sub:
        if ev.type == GAP:
            gaps += 1
            accounted += ev.data["missed"]
            assert ev.seq == last + ev.data["missed"]
        else:
            accounted += 1
            assert ev.seq == last + 1
            assert ev.data == ev.seq - 1
        last = ev.seq
        if accounted % 97 == 0:
            await asyncio.sleep(0.0005)  # be slow now and then so the buffer overflows
    await asyncio.to_thread(thread.join)
    assert accounted == total and last == total
    assert gaps > 0


def test_subscriber_on_another_loop_thread_receives_events_published_here() -> None:
    bus = EventBus()
    with LoopThread("events-test") as lt:

        async def make_and_read() -> list[int]:
            sub = bus.subscribe("t")
            ready.set()
            return [e.data async for e in sub]

        ready = threading.Event()
        fut = lt.submit(make_and_read())
        assert ready.wait(5)
        for i in range(50):
            bus.publish("t", "n", i)
        bus.close_topic("t")
        assert fut.result(5) == list(range(50))


def test_publish_without_any_event_loop_or_subscriber_works() -> None:
    bus = EventBus(history_size=2)
    for i in range(5):
        ev = bus.publish("t", "n", i)
    assert ev.seq == 5
    assert [e.seq for e in bus.history("t")] == [4, 5]
    assert bus.last_seq("t") == 5 and bus.last_seq("missing") == 0


def test_event_to_dict_round_trips_fields() -> None:
    ev = Event("t", 3, "x", 1.5, {"a": 1})
    assert ev.to_dict() == {"topic": "t", "seq": 3, "type": "x", "ts": 1.5, "data": {"a": 1}}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"buffer_size": 0}, "buffer_size"), ({"history_size": -1}, "history_size")],
)
def test_invalid_bus_bounds_are_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EventBus(**kwargs)


async def test_stream_helper_unsubscribes_when_consumer_stops() -> None:
    bus = EventBus()
    gen = bus.stream("t")
    bus_task = asyncio.create_task(gen.__anext__())
    await asyncio.sleep(0)
    bus.publish("t", "n", 1)
    assert (await bus_task).data == 1
    await gen.aclose()
    assert bus.subscriber_count("t") == 0
