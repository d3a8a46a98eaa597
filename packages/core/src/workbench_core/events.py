"""In-process publish/subscribe with bounded buffers and replay.

Why this shape: an agent session, a serving stream and the tracker's live metrics each have one
producer (often a worker thread) and any number of viewers (SSE / WebSocket connections) that
come, go, stall and reconnect. The bus therefore guarantees:

- ``publish`` never blocks and never awaits, and is safe from any thread;
- every subscriber has a bounded buffer: when a slow subscriber falls behind, its *oldest*
  buffered events are dropped and it receives one ``Event(type="gap", data={"missed": n})``
  before the newest events, so memory stays bounded and the viewer knows it lost something;
- each topic keeps a bounded history, so a reconnecting client (SSE ``Last-Event-ID``) replays
  what it missed; if the history no longer reaches back far enough, replay starts with a gap;
- ``close_topic`` ends every subscriber's iteration cleanly once it has drained its buffer.

Delivery is an append straight into each subscriber's bounded deque under one short lock (so
sequence order is the same for everyone, whichever thread publishes); only a subscriber that is
actually parked waiting is woken (``call_soon_threadsafe`` when the publisher runs on another
thread). Gaps are detected by the reader from the contiguous sequence numbers. This keeps
``publish`` close to the cost of a bare ``put_nowait`` per subscriber.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["GAP", "Event", "EventBus", "Subscription"]

GAP = "gap"


class Event(NamedTuple):
    """One published event (immutable).

    A NamedTuple rather than a frozen dataclass because it is built once per publish on the hot
    path and a frozen dataclass costs about three times as much to construct. Being a tuple,
    ``json.dumps(event)`` would give a list: serialise with ``to_dict()`` (or ``encode_event``).

    Attributes:
        topic: the stream it belongs to (e.g. an agent session id).
        seq: position in the topic, counting from 1; a gap event carries the seq of the last
            event it stands for, so resuming after it (``Last-Event-ID``) does not replay events
            the receiver was already told it missed.
        type: what happened (``"token"``, ``"step"``, ``"gap"``, ...); the SSE event name.
        ts: publish time, seconds since the epoch (UTC).
        data: JSON-serialisable payload.
    """

    topic: str
    seq: int
    type: str
    ts: float
    data: Any = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of all fields."""
        return {
            "topic": self.topic,
            "seq": self.seq,
            "type": self.type,
            "ts": self.ts,
            "data": self.data,
        }


@dataclass(eq=False)
class _Topic:
    name: str
    history: deque[Event]
    seq: int = 0
    closed: bool = False
    # Copy-on-write tuples so publish iterates without copying: the subscriptions (weakly, so
    # one that is dropped without close() - a response generator that never started - does not
    # stay subscribed forever), their buffers (what publish appends to) and the ones currently
    # parked waiting for an event.
    subscribers: tuple[weakref.ref[Subscription], ...] = ()
    buffers: tuple[deque[Event], ...] = ()
    waiting: set[Subscription] = field(default_factory=set)
    # Set from a weakref callback (any thread, possibly inside publish): never take the lock
    # there, just flag; the next locked operation prunes.
    dirty: bool = False

    def mark_dirty(self, _ref: object) -> None:
        self.dirty = True

    def prune(self) -> None:
        """Drop subscriptions that were garbage-collected; call with the bus lock held."""
        live = [(r, sub) for r in self.subscribers if (sub := r()) is not None]
        self.subscribers = tuple(r for r, _ in live)
        self.buffers = tuple(sub._buf for _, sub in live)
        self.dirty = False


_new_event = tuple.__new__
_now = time.time


class Subscription:
    """An async iterator of one topic's events, created by ``EventBus.subscribe``.

    Iterate it with ``async for``; stop with ``aclose()`` (or ``async with``). Use ``next(timeout)``
    to wait with a timeout without cancelling anything (e.g. to send heartbeats). One consumer
    per subscription.

    How overflow works: the buffer is a ``deque(maxlen=buffer_size)`` that the publisher appends
    to, so the oldest event falls out by itself. Sequence numbers of a topic are contiguous, so
    the consumer notices the hole when it reads and emits the gap marker itself. That keeps
    publish to a bare append and lets the consumer read buffered events without a lock.
    """

    __slots__ = (
        "__weakref__",
        "_buf",
        "_bus",
        "_closed",
        "_expect",
        "_held",
        "_loop",
        "_thread_id",
        "_topic",
        "_waiter",
        "topic",
    )

    def __init__(self, bus: EventBus, topic: _Topic, maxlen: int, expect: int) -> None:
        self._bus = bus
        self._topic = topic
        self.topic = topic.name
        self._buf: deque[Event] = deque(maxlen=maxlen)
        self._expect = expect  # the seq the consumer should see next
        self._held: Event | None = None  # an event held back behind a gap marker
        self._closed = False
        self._waiter: asyncio.Future[bool] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0

    def __repr__(self) -> str:
        return (
            f"<Subscription topic={self.topic!r} buffered={len(self._buf)} closed={self._closed}>"
        )

    @property
    def closed(self) -> bool:
        """True once the topic was closed or ``aclose()`` was called (events may remain)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Events buffered and not yet consumed (not counting a gap marker still to come)."""
        return len(self._buf) + (self._held is not None)

    # --- producer side: called with the bus lock held ---------------------------------------

    def _wake(self) -> None:
        fut = self._waiter
        self._waiter = None
        self._topic.waiting.discard(self)
        if fut is None:
            return
        if threading.get_ident() == self._thread_id:
            _resolve(fut)
            return
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(_resolve, fut)
        except RuntimeError:
            # The subscriber's loop is closed: nobody will ever read this subscription.
            self._closed = True

    def _end(self) -> None:
        self._closed = True
        if self._waiter is not None:
            self._wake()

    # --- consumer side ----------------------------------------------------------------------

    def _take(self) -> Event | None:
        """Next event (a gap marker first if events were dropped), or None if empty."""
        ev = self._held
        if ev is not None:
            self._held = None
        else:
            try:
                ev = self._buf.popleft()
            except IndexError:
                return None
            missed = ev.seq - self._expect
            if missed > 0:
                self._held = ev
                return _new_event(
                    Event, (self.topic, ev.seq - 1, GAP, time.time(), {"missed": missed})
                )
        self._expect = ev.seq + 1
        return ev

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting at most ``timeout`` seconds.

        Returns:
            The event, or None if the timeout passed first.

        Raises:
            StopAsyncIteration: the subscription is closed and drained.
        """
        ev = self._take()
        if ev is not None:
            return ev
        lock = self._bus._lock
        deadline: float | None = None
        while True:
            with lock:
                # Checked again under the lock: a publish between the first look and here must
                # not be missed (it would wake nobody).
                ev = self._take()
                if ev is not None:
                    return ev
                if self._closed:
                    raise StopAsyncIteration
                loop = self._bind()
                fut: asyncio.Future[bool] = loop.create_future()
                self._waiter = fut
                self._topic.waiting.add(self)
            handle: asyncio.TimerHandle | None = None
            if timeout is not None:
                if deadline is None:
                    deadline = loop.time() + timeout
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self._unpark(fut)
                    return self._take()
                handle = loop.call_later(remaining, _timeout, fut)
            try:
                timed_out = await fut
            except BaseException:
                self._unpark(fut)
                raise
            finally:
                if handle is not None:
                    handle.cancel()
            if timed_out:
                self._unpark(fut)
                return self._take()

    def _unpark(self, fut: asyncio.Future[bool]) -> None:
        with self._bus._lock:
            if self._waiter is fut:
                self._waiter = None
                self._topic.waiting.discard(self)

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._thread_id = threading.get_ident()
        return loop

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        # Fast path, no lock: deque.popleft is atomic and only this consumer pops.
        if self._held is None:
            try:
                ev = self._buf.popleft()
            except IndexError:
                pass
            else:
                missed = ev.seq - self._expect
                if missed <= 0:
                    self._expect = ev.seq + 1
                    return ev
                self._held = ev
                return _new_event(
                    Event, (self.topic, ev.seq - 1, GAP, time.time(), {"missed": missed})
                )
        nxt = await self.next()
        assert nxt is not None
        return nxt

    def close(self) -> None:
        """Unsubscribe; buffered events can still be drained, then iteration ends."""
        self._bus._unsubscribe(self)

    async def aclose(self) -> None:
        """Unsubscribe (async spelling, for ``contextlib.aclosing`` and friends)."""
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def drain(self) -> list[Event]:
        """Take every event buffered right now, without waiting (gap marker first, if any)."""
        out: list[Event] = []
        while (ev := self._take()) is not None:
            out.append(ev)
        return out


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


def _timeout(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


class EventBus:
    """Per-topic fan-out to many subscribers, bounded everywhere.

    Args:
        buffer_size: events a subscriber may have unconsumed before its oldest are dropped.
        history_size: events kept per topic for replay to (re)connecting subscribers.
        closed_topics: how many closed topics keep their history for late replay before the
            least recently closed is forgotten (bounds memory across many sessions).
    """

    def __init__(
        self, buffer_size: int = 1024, history_size: int = 1024, closed_topics: int = 256
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if history_size < 0:
            raise ValueError(f"history_size must be >= 0, got {history_size}")
        if closed_topics < 0:
            raise ValueError(f"closed_topics must be >= 0, got {closed_topics}")
        self.buffer_size = buffer_size
        self.history_size = history_size
        self.closed_topics = closed_topics
        self._lock = threading.Lock()
        self._topics: dict[str, _Topic] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()

    def _get(self, name: str) -> _Topic:
        t = self._topics.get(name)
        if t is None:
            t = _Topic(name, deque(maxlen=self.history_size))
            self._topics[name] = t
        return t

    def publish(self, topic: str, type: str, data: Any = None) -> Event:
        """Publish one event; never blocks, safe from any thread.

        Publishing to a closed topic reopens it (sequence numbers continue).

        Returns:
            The event, with its sequence number.
        """
        # acquire/release rather than ``with``: measurably cheaper on this hot path.
        lock = self._lock
        lock.acquire()
        try:
            t = self._topics.get(topic)
            if t is None:
                t = self._get(topic)
            elif t.closed:
                t.closed = False
                self._closed.pop(topic, None)
            if t.dirty:
                t.prune()
            seq = t.seq = t.seq + 1
            ev = _new_event(Event, (topic, seq, type, _now(), data))
            t.history.append(ev)
            for buf in t.buffers:
                buf.append(ev)  # a full deque drops its oldest; the reader reports the gap
            if t.waiting:
                for sub in tuple(t.waiting):
                    sub._wake()
        finally:
            lock.release()
        return ev

    def subscribe(
        self, topic: str, last_seq: int | None = None, *, buffer_size: int | None = None
    ) -> Subscription:
        """Subscribe to ``topic``.

        Args:
            topic: the topic (need not exist yet).
            last_seq: replay history after this seq first (0 = all history; the SSE
                ``Last-Event-ID``); None = only new events. If history no longer reaches back to
                ``last_seq + 1``, replay begins with a gap event counting the lost ones.
            buffer_size: this subscriber's bound, instead of the bus default (e.g. a bulk
                exporter that must not miss anything in a burst).

        Returns:
            The subscription. On a closed topic it yields the replay and then ends.
        """
        size = self.buffer_size if buffer_size is None else buffer_size
        if size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {size}")
        with self._lock:
            t = self._get(topic)
            if last_seq is None or last_seq >= t.seq:
                sub = Subscription(self, t, size, t.seq + 1)
            else:
                sub = Subscription(self, t, size, max(last_seq, 0) + 1)
                sub._buf.extend(ev for ev in t.history if ev.seq > last_seq)
            if t.closed:
                sub._closed = True
            else:
                if t.dirty:
                    t.prune()
                t.subscribers = (*t.subscribers, weakref.ref(sub, t.mark_dirty))
                t.buffers = (*t.buffers, sub._buf)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            t = sub._topic
            if any(r() is sub for r in t.subscribers):
                t.subscribers = tuple(r for r in t.subscribers if r() is not sub)
                t.prune()
            sub._end()
            if not t.subscribers and not t.history and not t.closed:
                if self._topics.get(t.name) is t:
                    del self._topics[t.name]

    def close_topic(self, topic: str) -> None:
        """End the topic: its subscribers finish after draining; history stays for replay.

        Closed topics are remembered (bounded by ``closed_topics``) so a late reconnect still
        replays and then ends instead of waiting forever.
        """
        with self._lock:
            t = self._topics.get(topic)
            if t is None or t.closed:
                return
            t.closed = True
            refs, t.subscribers, t.buffers = t.subscribers, (), ()
            for ref in refs:
                sub = ref()
                if sub is not None:
                    sub._end()
            self._closed[topic] = None
            while len(self._closed) > self.closed_topics:
                old, _ = self._closed.popitem(last=False)
                self._topics.pop(old, None)

    def close(self) -> None:
        """Close every topic."""
        with self._lock:
            names = [n for n, t in self._topics.items() if not t.closed]
        for name in names:
            self.close_topic(name)

    def last_seq(self, topic: str) -> int:
        """The last published seq of ``topic`` (0 if none)."""
        with self._lock:
            t = self._topics.get(topic)
            return t.seq if t is not None else 0

    def history(self, topic: str, after: int = 0) -> list[Event]:
        """The retained events of ``topic`` with seq > ``after``."""
        with self._lock:
            t = self._topics.get(topic)
            return [ev for ev in t.history if ev.seq > after] if t is not None else []

    def is_closed(self, topic: str) -> bool:
        """Whether ``topic`` is currently closed."""
        with self._lock:
            t = self._topics.get(topic)
            return t is not None and t.closed

    def subscriber_count(self, topic: str) -> int:
        """How many live subscribers ``topic`` has."""
        with self._lock:
            t = self._topics.get(topic)
            if t is None:
                return 0
            t.prune()
            return len(t.subscribers)

    def topics(self) -> list[str]:
        """Names of all known topics (open and remembered closed ones)."""
        with self._lock:
            return list(self._topics)

    async def stream(self, topic: str, last_seq: int | None = None) -> AsyncGenerator[Event, None]:
        """Convenience generator over ``subscribe`` that always unsubscribes at the end."""
        sub = self.subscribe(topic, last_seq)
        try:
            async for ev in sub:
                yield ev
        finally:
            sub.close()
