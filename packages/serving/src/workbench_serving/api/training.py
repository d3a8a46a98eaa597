"""LoRA training runs under ``/api/v1/training`` (Tinker's loop: forward_backward, optim_step).

Every call becomes a ``TrainingOp`` on the training engine's scheduler, so it runs in the device
thread in arrival order per run, never concurrently with sampling on the shared base weights.
Saved checkpoints become models (``<run_id>:<name>``) usable in ``sample`` and under ``/v1``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from workbench_core.protocol import (
    Checkpoint,
    CheckpointList,
    CreateSamplerRequest,
    CreateSamplerResponse,
    CreateTrainingRunRequest,
    ForwardBackwardRequest,
    ForwardBackwardResponse,
    LoadCheckpointRequest,
    LoadCheckpointResponse,
    OptimStepRequest,
    OptimStepResponse,
    SaveCheckpointRequest,
    TrainingRun,
    TrainingRunList,
)
from workbench_serving.api._common import respond, run_item, state_of
from workbench_serving.api.errors import APIError
from workbench_serving.api.native import ERRORS
from workbench_serving.api.state import Adapter, ServedModel, ServingState
from workbench_serving.engines.base import (
    AdamParams,
    CheckpointInfo,
    ForwardBackwardResult,
    RunInfo,
    TrainingDatum,
    TrainingOp,
)

router = APIRouter(prefix="/api/v1/training", tags=["training"], responses=ERRORS)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat()


def _training(st: ServingState) -> ServedModel:
    if st.training is None:
        raise APIError(404, "training is not enabled on this server", param="base_model")
    return st.ensure_ready(st.training)


def _to_run(st: ServingState, info: RunInfo) -> TrainingRun:
    return TrainingRun(
        id=info.run_id,
        base_model=info.base_model,
        rank=info.rank,
        seed=info.seed,
        target_modules=list(info.target_modules),
        step=info.step,
        created_at=_iso(info.created_at),
        checkpoints=sorted(a.checkpoint for a in st.adapters.values() if a.run_id == info.run_id),
    )


def _to_checkpoint(st: ServingState, info: CheckpointInfo) -> Checkpoint:
    return Checkpoint(
        name=info.name,
        kind=info.kind,
        run_id=info.run_id,
        step=info.step,
        model_name=info.model_name,
        base_model=st.training.name if st.training else None,
        created_at=_iso(info.created_at),
    )


async def _op(request: Request, op: TrainingOp, *, watch: bool = True) -> Any:
    st = state_of(request)
    training = _training(st)
    return await run_item(request, training.scheduler, op, watch=watch)


@router.post("/runs", response_model=TrainingRun)
async def create_run(req: CreateTrainingRunRequest, request: Request) -> Any:
    """Start a LoRA run on a served base model."""
    st = state_of(request)
    training = _training(st)
    if req.base_model != training.name:
        raise APIError(
            404,
            f"base_model: {req.base_model!r} is not trainable here; use {training.name!r}",
            param="base_model",
            code="model_not_found",
        )
    listed: list[RunInfo] = await _op(request, TrainingOp("list_runs"))
    if len(listed) >= st.settings.max_training_runs:
        raise APIError(
            409,
            f"this server holds at most {st.settings.max_training_runs} training runs",
            param="base_model",
        )
    payload: dict[str, Any] = {"rank": req.rank, "base_model": req.base_model}
    if req.seed is not None:
        payload["seed"] = req.seed
    if req.target_modules is not None:
        payload["target_modules"] = req.target_modules

    async def work(watch: bool) -> BaseModel:
        run_id = await _op(request, TrainingOp("create_run", payload=payload), watch=watch)
        info = await _op(request, TrainingOp("get_run", run_id=run_id), watch=False)
        return _to_run(st, info)

    return await respond(request, work)


@router.get("/runs", response_model=TrainingRunList)
async def list_runs(request: Request) -> TrainingRunList:
    st = state_of(request)
    infos: list[RunInfo] = await _op(request, TrainingOp("list_runs"))
    return TrainingRunList(runs=[_to_run(st, i) for i in infos])


@router.get("/runs/{run_id}", response_model=TrainingRun)
async def get_run(run_id: str, request: Request) -> TrainingRun:
    st = state_of(request)
    info = await _op(request, TrainingOp("get_run", run_id=run_id))
    return _to_run(st, info)


@router.post("/runs/{run_id}/forward_backward", response_model=ForwardBackwardResponse)
async def forward_backward(run_id: str, req: ForwardBackwardRequest, request: Request) -> Any:
    """Accumulate gradients of the weighted cross-entropy over ``data``."""
    data: list[TrainingDatum] = []
    for i, d in enumerate(req.data):
        tokens = d.model_input.to_ints()
        targets = d.loss_fn_inputs.target_tokens
        weights = d.loss_fn_inputs.weights
        if len(targets) != len(tokens):
            raise APIError(
                400,
                f"data.{i}.loss_fn_inputs.target_tokens has {len(targets)} entries but "
                f"model_input has {len(tokens)} tokens",
                param=f"data.{i}.loss_fn_inputs.target_tokens",
            )
        if weights is None:
            weights = [1.0] * len(tokens)
        if len(weights) != len(tokens):
            raise APIError(
                400,
                f"data.{i}.loss_fn_inputs.weights has {len(weights)} entries, expected "
                f"{len(tokens)}",
                param=f"data.{i}.loss_fn_inputs.weights",
            )
        if any(w < 0 or w != w for w in weights):
            raise APIError(
                400,
                f"data.{i}.loss_fn_inputs.weights must be >= 0",
                param=f"data.{i}.loss_fn_inputs.weights",
            )
        data.append(TrainingDatum(tokens=tokens, target_tokens=list(targets), weights=weights))
    op = TrainingOp(
        "forward_backward", run_id=run_id, payload={"data": data, "loss_fn": req.loss_fn}
    )

    async def work(watch: bool) -> BaseModel:
        result: ForwardBackwardResult = await _op(request, op, watch=watch)
        return ForwardBackwardResponse(loss=result.loss, logprobs=result.logprobs)

    return await respond(request, work)


@router.post("/runs/{run_id}/optim_step", response_model=OptimStepResponse)
async def optim_step(run_id: str, req: OptimStepRequest, request: Request) -> Any:
    """One AdamW step on the run's LoRA weights (send an ``Idempotency-Key`` when retrying)."""
    p = req.adam_params
    adam = AdamParams(
        learning_rate=p.learning_rate,
        beta1=p.beta1,
        beta2=p.beta2,
        eps=p.eps,
        weight_decay=p.weight_decay,
        grad_clip_norm=p.grad_clip_norm or 0.0,
    )
    op = TrainingOp("optim_step", run_id=run_id, payload={"adam_params": adam})

    async def work(watch: bool) -> BaseModel:
        step = await _op(request, op, watch=watch)
        return OptimStepResponse(step=int(step))

    return await respond(request, work)


def _register_adapter(st: ServingState, info: CheckpointInfo) -> None:
    assert st.training is not None
    st.adapters[info.model_name] = Adapter(
        model_name=info.model_name,
        base_model=st.training.name,
        run_id=info.run_id,
        checkpoint=info.name,
        path=info.path,
    )


@router.post("/runs/{run_id}/checkpoints", response_model=Checkpoint)
async def save_checkpoint(run_id: str, req: SaveCheckpointRequest, request: Request) -> Any:
    """Save the run's adapter (``weights``) or adapter + optimizer (``state``); serve it."""
    st = state_of(request)
    op = TrainingOp("save_checkpoint", run_id=run_id, payload={"name": req.name, "kind": req.kind})

    async def work(watch: bool) -> BaseModel:
        info: CheckpointInfo = await _op(request, op, watch=watch)
        # Served as a model right away: load it as a frozen adapter next to the base.
        reg = TrainingOp("register_sampler", run_id=run_id, payload={"checkpoint": info.name})
        await _op(request, reg, watch=False)
        _register_adapter(st, info)
        return _to_checkpoint(st, info)

    return await respond(request, work)


@router.get("/runs/{run_id}/checkpoints", response_model=CheckpointList)
async def list_checkpoints(run_id: str, request: Request) -> CheckpointList:
    st = state_of(request)
    infos: list[CheckpointInfo] = await _op(request, TrainingOp("list_checkpoints", run_id=run_id))
    return CheckpointList(checkpoints=[_to_checkpoint(st, i) for i in infos])


@router.post("/runs/{run_id}/load", response_model=LoadCheckpointResponse)
async def load_checkpoint(run_id: str, req: LoadCheckpointRequest, request: Request) -> Any:
    """Load a checkpoint's weights (and optimizer state) into the run."""
    op = TrainingOp(
        "load_checkpoint",
        run_id=run_id,
        payload={"checkpoint": req.checkpoint, "with_optimizer": req.with_optimizer},
    )

    async def work(watch: bool) -> BaseModel:
        info: CheckpointInfo = await _op(request, op, watch=watch)
        return LoadCheckpointResponse(run_id=run_id, checkpoint=info.name, step=info.step)

    return await respond(request, work)


@router.post("/runs/{run_id}/sampler", response_model=CreateSamplerResponse)
async def create_sampler(run_id: str, req: CreateSamplerRequest, request: Request) -> Any:
    """A model name that samples from a saved checkpoint (frozen; later training won't move it)."""
    st = state_of(request)
    op = TrainingOp("register_sampler", run_id=run_id, payload={"checkpoint": req.checkpoint})

    async def work(watch: bool) -> BaseModel:
        name = await _op(request, op, watch=watch)
        infos: list[CheckpointInfo] = await _op(
            request, TrainingOp("list_checkpoints", run_id=run_id), watch=False
        )
        for info in infos:
            if info.model_name == name:
                _register_adapter(st, info)
        return CreateSamplerResponse(model_name=str(name))

    return await respond(request, work)
