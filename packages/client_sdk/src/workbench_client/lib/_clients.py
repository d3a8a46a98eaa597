"""Tinker-shaped high-level clients: ``ServiceClient``, ``TrainingClient``, ``SamplingClient``.

A Tinker script ports by changing its imports::

    service = ServiceClient()
    training = service.create_lora_training_client(base_model="tiny-llama", rank=8)
    fb = training.forward_backward(data, "cross_entropy")
    step = training.optim_step(AdamParams(learning_rate=1e-3))
    print(fb.result().loss, step.result().step)
    sampler = training.save_weights_and_get_sampling_client("final")
    print(sampler.sample(ModelInput.from_ints(ids), 2, SamplingParams(max_tokens=8)).result())

Calls return an ``APIFuture`` at once; the work runs on the client's loop thread under one
``RetryHandler`` (connection limit, progress timeout, whole-call retries). The calls of one
training run are applied in the order they were submitted, and mutating ones carry one
Idempotency-Key across every retry, so a step is applied exactly once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from workbench_core.protocol import (
    AdamParams,
    Capabilities,
    Checkpoint,
    LoadCheckpointResponse,
    ModelInput,
    OptimStepResponse,
    SampleResponse,
    SamplingParams,
    SupportedModel,
    TrainingRun,
)

from .._client import AsyncWorkbench, Workbench
from ..types import Datum, ForwardBackwardOutput
from ._futures import APIFuture
from ._retry_handler import RetryConfig, RetryHandler
from ._tokenizer import Tokenizer
from ._tracking import StepLogger

T = TypeVar("T")


class _InOrder:
    """Runs coroutines strictly in the order tickets were taken (one at a time).

    Tickets are taken synchronously in the caller's thread at submission, so "submitted before"
    means "applied before" even when the coroutines start on the loop in another order. A
    cancelled waiter gives up its turn instead of blocking the queue.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._serving = 0
        self._finished: set[int] = set()
        self._cond: asyncio.Condition | None = None

    def ticket(self) -> int:
        with self._lock:
            t = self._next
            self._next += 1
            return t

    def _advance(self, ticket: int) -> None:
        self._finished.add(ticket)
        while self._serving in self._finished:
            self._finished.discard(self._serving)
            self._serving += 1

    async def run(self, ticket: int, fn: Callable[[], Awaitable[T]]) -> T:
        if self._cond is None:
            self._cond = asyncio.Condition()
        cond = self._cond
        try:
            async with cond:
                await cond.wait_for(lambda: self._serving == ticket)
            return await fn()
        finally:
            async with cond:
                self._advance(ticket)
                cond.notify_all()


class _Base:
    def __init__(self, holder: _Holder) -> None:
        self._holder = holder

    @property
    def _wb(self) -> AsyncWorkbench:
        return self._holder.sync.async_client

    def _submit(
        self, coro_fn: Callable[[], Awaitable[T]], order: tuple[_InOrder, int] | None = None
    ) -> APIFuture[T]:
        """Run ``coro_fn`` under the retry handler on the loop thread; return its future.

        With ``order`` the call waits for its ticket's turn first, and holds the turn through
        all its whole-call retries (a retry must not jump behind later calls of the run).
        """
        runner = self._holder.sync.runner
        handler = self._holder.handler

        async def go() -> T:
            if order is None:
                return await handler.execute(coro_fn)
            queue, ticket = order
            return await queue.run(ticket, lambda: handler.execute(coro_fn))

        return APIFuture(runner.submit(go()), runner.loop_thread)


class _Holder:
    """What every client a ServiceClient creates shares: the sync client and the retry handler."""

    def __init__(self, sync: Workbench, handler: RetryHandler) -> None:
        self.sync = sync
        self.handler = handler


class SamplingClient(_Base):
    """Samples from one model: a base model or a trained adapter checkpoint.

    Attributes:
        model: the served model name requests go to.
    """

    def __init__(self, holder: _Holder, model: str) -> None:
        super().__init__(holder)
        self.model = model

    def sample(
        self,
        prompt: ModelInput | str | Sequence[int],
        num_samples: int = 1,
        sampling_params: SamplingParams | dict[str, Any] | None = None,
    ) -> APIFuture[SampleResponse]:
        """Submit a sampling request; the future resolves to a ``SampleResponse``."""
        if not isinstance(prompt, (ModelInput, str)):
            prompt = ModelInput.from_ints(list(prompt))
        key = self._wb.new_idempotency_key()  # one key across whole-call retries too
        return self._submit(
            lambda: self._wb.sampling.sample(
                self.model,
                prompt,
                num_samples=num_samples,
                sampling_params=sampling_params,
                idempotency_key=key,
            )
        )

    async def sample_async(
        self,
        prompt: ModelInput | str | Sequence[int],
        num_samples: int = 1,
        sampling_params: SamplingParams | dict[str, Any] | None = None,
    ) -> SampleResponse:
        """Async ``sample``: awaits and returns the ``SampleResponse`` (Tinker's shape)."""
        return await self.sample(prompt, num_samples, sampling_params)

    def compute_logprobs(self, prompt: ModelInput | Sequence[int]) -> APIFuture[list[float | None]]:
        """Log p(token_i | tokens_<i) per position (None for the first)."""

        async def go() -> list[float | None]:
            return (await self._wb.sampling.compute_logprobs(self.model, prompt)).logprobs

        return self._submit(go)

    async def compute_logprobs_async(
        self, prompt: ModelInput | Sequence[int]
    ) -> list[float | None]:
        """Async ``compute_logprobs``."""
        return await self.compute_logprobs(prompt)

    def get_tokenizer(self) -> Tokenizer:
        """The model's tokenizer, built from the files the server serves."""
        return self._holder.sync.runner.run(self.get_tokenizer_async())

    async def get_tokenizer_async(self) -> Tokenizer:
        """Async ``get_tokenizer``."""
        info = await asyncio.wrap_future(
            self._holder.sync.runner.submit(self._wb.models.tokenizer(self.model))
        )
        return Tokenizer(info)


class TrainingClient(_Base):
    """One LoRA training run. Calls are applied in submission order, each exactly once.

    Attributes:
        run_id: the server's id of the run.
        base_model: the model the adapter trains on.
    """

    def __init__(
        self,
        holder: _Holder,
        run: TrainingRun,
        *,
        tracker_run: Any | None = None,
        log_to_tracker: bool = True,
    ) -> None:
        super().__init__(holder)
        self.run = run
        self.run_id = run.id
        self.base_model = run.base_model
        self._order = _InOrder()
        self._steps = StepLogger(tracker_run, enabled=log_to_tracker)
        self._tokenizer: Tokenizer | None = None

    def _ordered(self, coro_fn: Callable[[], Awaitable[T]]) -> APIFuture[T]:
        return self._submit(coro_fn, order=(self._order, self._order.ticket()))

    # ---------------------------------------------------------------- steps

    def forward_backward(
        self, data: Sequence[Datum | dict[str, Any]], loss_fn: str = "cross_entropy"
    ) -> APIFuture[ForwardBackwardOutput]:
        """Accumulate gradients of ``loss_fn`` over ``data``; resolves to the loss and logprobs."""
        items = [d if isinstance(d, Datum) else Datum.model_validate(d) for d in data]
        key = self._wb.new_idempotency_key()

        async def go() -> ForwardBackwardOutput:
            resp = await self._wb.training.forward_backward(
                self.run_id, items, loss_fn, idempotency_key=key
            )
            self._steps.record_loss(resp.loss)
            return ForwardBackwardOutput.from_response(resp, items)

        return self._ordered(go)

    async def forward_backward_async(
        self, data: Sequence[Datum | dict[str, Any]], loss_fn: str = "cross_entropy"
    ) -> APIFuture[ForwardBackwardOutput]:
        """Async ``forward_backward``: submits, returns the future (``await`` it for the result)."""
        return self.forward_backward(data, loss_fn)

    def optim_step(
        self, adam_params: AdamParams | dict[str, Any] | None = None
    ) -> APIFuture[OptimStepResponse]:
        """Apply one Adam step with the gradients accumulated so far (exactly once)."""
        params = (
            adam_params
            if isinstance(adam_params, AdamParams)
            else AdamParams.model_validate(adam_params or {})
        )
        key = self._wb.new_idempotency_key()

        async def go() -> OptimStepResponse:
            out = await self._wb.training.optim_step(self.run_id, params, idempotency_key=key)
            self._steps.on_step(out.step, params.learning_rate)
            return out

        return self._ordered(go)

    async def optim_step_async(
        self, adam_params: AdamParams | dict[str, Any] | None = None
    ) -> APIFuture[OptimStepResponse]:
        """Async ``optim_step``: submits, returns the future."""
        return self.optim_step(adam_params)

    # ---------------------------------------------------------------- checkpoints

    def save_state(self, name: str) -> APIFuture[Checkpoint]:
        """Save adapter weights and optimizer state (resume later with ``load_state``)."""
        key = self._wb.new_idempotency_key()
        return self._ordered(
            lambda: self._wb.training.save_checkpoint(
                self.run_id, name, kind="state", idempotency_key=key
            )
        )

    async def save_state_async(self, name: str) -> APIFuture[Checkpoint]:
        return self.save_state(name)

    def load_state(self, name: str) -> APIFuture[LoadCheckpointResponse]:
        """Load a checkpoint saved by ``save_state`` (weights and optimizer)."""
        key = self._wb.new_idempotency_key()
        return self._ordered(
            lambda: self._wb.training.load(
                self.run_id, name, with_optimizer=True, idempotency_key=key
            )
        )

    async def load_state_async(self, name: str) -> APIFuture[LoadCheckpointResponse]:
        return self.load_state(name)

    def save_weights_for_sampler(self, name: str) -> APIFuture[Checkpoint]:
        """Save the adapter weights; the checkpoint's ``model_name`` can be sampled from."""
        key = self._wb.new_idempotency_key()
        return self._ordered(
            lambda: self._wb.training.save_checkpoint(
                self.run_id, name, kind="weights", idempotency_key=key
            )
        )

    async def save_weights_for_sampler_async(self, name: str) -> APIFuture[Checkpoint]:
        return self.save_weights_for_sampler(name)

    def save_weights_and_get_sampling_client(self, name: str) -> SamplingClient:
        """Save the weights under ``name`` and return a client that samples from them."""
        return self._holder.sync.runner.run(self.save_weights_and_get_sampling_client_async(name))

    async def save_weights_and_get_sampling_client_async(self, name: str) -> SamplingClient:
        keys = (self._wb.new_idempotency_key(), self._wb.new_idempotency_key())

        async def go() -> str:
            ckpt = await self._wb.training.save_checkpoint(
                self.run_id, name, kind="weights", idempotency_key=keys[0]
            )
            sampler = await self._wb.training.create_sampler(
                self.run_id, ckpt.name, idempotency_key=keys[1]
            )
            return sampler.model_name

        model_name = await self._ordered(go)
        return SamplingClient(self._holder, model_name)

    def list_checkpoints(self) -> APIFuture[list[Checkpoint]]:
        """The run's checkpoints (after every call submitted before this one)."""
        return self._ordered(lambda: self._wb.training.list_checkpoints(self.run_id))

    async def list_checkpoints_async(self) -> APIFuture[list[Checkpoint]]:
        return self.list_checkpoints()

    # ---------------------------------------------------------------- info

    def get_info(self) -> TrainingRun:
        """The run as the server sees it now (step, checkpoints)."""
        return self._holder.sync.runner.run(self.get_info_async())

    async def get_info_async(self) -> TrainingRun:
        """Async ``get_info``."""
        return await asyncio.wrap_future(
            self._holder.sync.runner.submit(self._wb.training.get_run(self.run_id))
        )

    def get_tokenizer(self) -> Tokenizer:
        """The base model's tokenizer, from the files the server serves (cached)."""
        if self._tokenizer is None:
            return self._holder.sync.runner.run(self.get_tokenizer_async())
        return self._tokenizer

    async def get_tokenizer_async(self) -> Tokenizer:
        """Async ``get_tokenizer``."""
        if self._tokenizer is None:
            info = await asyncio.wrap_future(
                self._holder.sync.runner.submit(self._wb.models.tokenizer(self.base_model))
            )
            self._tokenizer = Tokenizer(info)
        return self._tokenizer

    def create_sampling_client(self, model_path: str) -> SamplingClient:
        """A sampling client for a saved checkpoint's model name."""
        return SamplingClient(self._holder, model_path)

    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        return self.create_sampling_client(model_path)


class ServiceClient:
    """Entry point: server capabilities and factories for training and sampling clients.

    Args:
        base_url: server root (default ``WORKBENCH_BASE_URL``).
        api_key: API key (default ``WORKBENCH_API_KEY``).
        retry_config: connection limit, progress timeout, whole-call retries.
        **kwargs: more ``AsyncWorkbench`` arguments (timeout, retry_policy, loop_thread, ...).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        retry_config: RetryConfig | None = None,
        **kwargs: Any,
    ) -> None:
        config = retry_config or RetryConfig()
        kwargs.setdefault("max_connections", config.max_connections)
        sync = Workbench(base_url=base_url, api_key=api_key, **kwargs)
        self._holder = _Holder(sync, RetryHandler(config))

    @property
    def client(self) -> Workbench:
        """The underlying sync ``Workbench`` client (``.async_client`` for the async one)."""
        return self._holder.sync

    @property
    def retry_handler(self) -> RetryHandler:
        return self._holder.handler

    def _run(self, coro: Any) -> Any:
        return self._holder.sync.runner.run(coro)

    def get_server_capabilities(self) -> Capabilities:
        """What the server serves; ``supported_models`` holds Tinker's ``model_name`` entries."""
        return self._run(self.get_server_capabilities_async())  # type: ignore[no-any-return]

    async def get_server_capabilities_async(self) -> Capabilities:
        caps = await self._on_loop(self._holder.sync.async_client.service.capabilities())
        if not caps.supported_models:
            caps.supported_models = [SupportedModel(model_name=m.name) for m in caps.models]
        return caps

    async def _on_loop(self, coro: Any) -> Any:
        """Await ``coro`` on the client's loop thread from whatever loop the caller is on."""
        return await asyncio.wrap_future(self._holder.sync.runner.submit(coro))

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        *,
        target_modules: list[str] | None = None,
        tracker_run: Any | None = None,
        log_to_tracker: bool = True,
    ) -> TrainingClient:
        """Start a LoRA run on ``base_model`` and return its client.

        Args:
            tracker_run: a workbench-tracker run to log loss and learning rate to; None = the
                tracker's active run at each step, if the tracker is installed.
            log_to_tracker: False disables the tracker hook.
        """
        return self._run(  # type: ignore[no-any-return]
            self.create_lora_training_client_async(
                base_model,
                rank,
                seed,
                target_modules=target_modules,
                tracker_run=tracker_run,
                log_to_tracker=log_to_tracker,
            )
        )

    async def create_lora_training_client_async(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        *,
        target_modules: list[str] | None = None,
        tracker_run: Any | None = None,
        log_to_tracker: bool = True,
    ) -> TrainingClient:
        wb = self._holder.sync.async_client
        key = wb.new_idempotency_key()  # a whole-call retry must not start a second run
        run = await self._on_loop(
            self._holder.handler.execute(
                lambda: wb.training.create_run(
                    base_model,
                    rank=rank,
                    seed=seed,
                    target_modules=target_modules,
                    idempotency_key=key,
                )
            )
        )
        return TrainingClient(
            self._holder, run, tracker_run=tracker_run, log_to_tracker=log_to_tracker
        )

    def create_training_client(self, run_id: str, **kwargs: Any) -> TrainingClient:
        """A client for an existing run (e.g. to continue one started elsewhere)."""
        return self._run(self.create_training_client_async(run_id, **kwargs))  # type: ignore[no-any-return]

    async def create_training_client_async(self, run_id: str, **kwargs: Any) -> TrainingClient:
        run = await self._on_loop(self._holder.sync.async_client.training.get_run(run_id))
        return TrainingClient(self._holder, run, **kwargs)

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> SamplingClient:
        """A sampling client for a saved checkpoint (``model_path``) or a ``base_model``."""
        model = model_path or base_model
        if not model:
            raise ValueError("create_sampling_client needs model_path or base_model")
        return SamplingClient(self._holder, model)

    async def create_sampling_client_async(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> SamplingClient:
        return self.create_sampling_client(model_path, base_model)

    def close(self) -> None:
        self._holder.sync.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["SamplingClient", "ServiceClient", "TrainingClient"]
