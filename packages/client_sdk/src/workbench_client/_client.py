"""``AsyncWorkbench`` (the client) and ``Workbench`` (its sync twin on core's loop thread).

The sync twin is not a second implementation: every sync method runs the async method's
coroutine on one background event loop (``workbench_core.aio.LoopThread``) and blocks on its
future, so behaviour (retries, errors, parsing) is identical by construction, connection pools
stay warm between calls, and any number of threads can share one ``Workbench``.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from workbench_core.aio import LoopThread, get_loop_thread

from ._base_client import AsyncAPIClient
from ._errors import SyncInAsyncContextError
from ._resources import (
    FuturesResource,
    ImagesResource,
    ModelsResource,
    SampleStream,
    SamplingResource,
    ServiceResource,
    TrainingResource,
    VisionResource,
)
from ._sync_resources import (
    SyncFuturesResource,
    SyncImagesResource,
    SyncModelsResource,
    SyncSamplingResource,
    SyncServiceResource,
    SyncTrainingResource,
    SyncVisionResource,
)

T = TypeVar("T")


class AsyncWorkbench(AsyncAPIClient):
    """The async Workbench client: one pipeline, one resource attribute per API area.

    Example::

        async with AsyncWorkbench() as wb:
            caps = await wb.service.capabilities()
            out = await wb.sampling.sample("tiny-llama", "Hello", num_samples=2)

    See ``AsyncAPIClient`` for the constructor arguments.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = ServiceResource(self)
        self.models = ModelsResource(self)
        self.sampling = SamplingResource(self)
        self.images = ImagesResource(self)
        self.vision = VisionResource(self)
        self.training = TrainingResource(self)
        self.futures = FuturesResource(self)


class Runner:
    """Runs coroutines on a ``LoopThread`` for sync callers, refusing where it would deadlock."""

    def __init__(self, loop_thread: LoopThread | None = None) -> None:
        self.loop_thread = loop_thread or get_loop_thread()

    def _check(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self.loop_thread.in_loop_thread():
            coro.close()
            raise SyncInAsyncContextError(
                "A blocking Workbench call was made on the client's own event-loop thread, "
                "where it would wait on itself forever; use AsyncWorkbench (or the *_async "
                "methods) and await instead"
            )

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop thread and wait for its result."""
        self._check(coro)
        # A LoopThreadError from here on means the loop was stopped (e.g. at interpreter exit);
        # it propagates as is: it is not a deadlock.
        return self.loop_thread.run(coro, timeout=timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop thread without waiting."""
        return self.loop_thread.submit(coro)


class SyncSampleStream:
    """The sync view of a ``SampleStream``: iterate ``TokenEvent``s, then read ``final``."""

    def __init__(self, stream: SampleStream, runner: Runner) -> None:
        self._stream = stream
        self._runner = runner

    @property
    def final(self) -> Any:
        return self._stream.final

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return self._runner.run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._runner.run(self._stream.aclose())

    def until_done(self) -> Any:
        return self._runner.run(self._stream.until_done())


class Workbench:
    """The synchronous Workbench client: same resources and arguments as ``AsyncWorkbench``.

    Safe to share between threads. Calling it from the loop thread itself (e.g. inside a
    coroutine the client runs) raises ``SyncInAsyncContextError`` instead of deadlocking.

    Args:
        loop_thread: the loop to run on (default: the process-wide one from workbench-core).
        **kwargs: ``AsyncWorkbench`` arguments (base_url, api_key, timeout, retry_policy, ...).
    """

    def __init__(self, *, loop_thread: LoopThread | None = None, **kwargs: Any) -> None:
        self._runner = Runner(loop_thread)

        async def make() -> AsyncWorkbench:
            # Built on the loop thread so the connection pool belongs to that loop.
            return AsyncWorkbench(**kwargs)

        self.async_client = self._runner.run(make())
        wb, runner = self.async_client, self._runner
        self.service = SyncServiceResource(wb.service, runner)
        self.models = SyncModelsResource(wb.models, runner)
        self.sampling = SyncSamplingResource(wb.sampling, runner)
        self.images = SyncImagesResource(wb.images, runner)
        self.vision = SyncVisionResource(wb.vision, runner)
        self.training = SyncTrainingResource(wb.training, runner)
        self.futures = SyncFuturesResource(wb.futures, runner)

    @property
    def runner(self) -> Runner:
        """The loop-thread runner (used by the high-level clients to submit futures)."""
        return self._runner

    @property
    def base_url(self) -> str:
        return self.async_client.base_url

    def close(self) -> None:
        """Close the connection pool."""
        self._runner.run(self.async_client.close())

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["AsyncWorkbench", "Runner", "SyncSampleStream", "Workbench"]
