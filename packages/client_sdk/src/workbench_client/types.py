"""The types a Tinker-style script builds: inputs, data, sampling and optimiser parameters.

They are the wire types of ``workbench_core.protocol`` (one source of truth with the server) with
one convenience on top: wherever a list of numbers is expected, a numpy array or a torch tensor
works too. Tensors are detected by duck typing (``.tolist()``), so this module never imports torch
and ``pip install workbench-client`` never pulls it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field, model_validator

from workbench_core import protocol as _p
from workbench_core.protocol import (
    AdamParams,
    Capabilities,
    ChatMessage,
    Checkpoint,
    EncodedTextChunk,
    JsonSchemaFormat,
    LossFnInputs,
    ModelInfo,
    ResponseFormat,
    SampledSequence,
    SampleResponse,
    SamplingParams,
    SupportedModel,
    TrainingRun,
)


def to_list(value: Any) -> Any:
    """Turn a numpy array, a torch tensor or any iterable of numbers into a plain list.

    Anything with ``.tolist()`` (numpy, torch, jax, array.array) is converted by it, which also
    turns numpy scalars into Python numbers so pydantic accepts them.
    """
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_list(v) for v in value]
    return value


def _as_ints(tokens: Iterable[Any]) -> list[int]:
    seq = to_list(tokens)
    if not isinstance(seq, list):
        seq = list(seq)
    return [int(t) for t in seq]


class ModelInput(_p.ModelInput):
    """Token ids in Tinker's shape (a list of chunks); ``from_ints`` accepts arrays and tensors."""

    @classmethod
    def from_ints(cls, tokens: Iterable[Any]) -> ModelInput:
        """Build an input from token ids (a list, numpy array or torch tensor)."""
        return cls(chunks=[EncodedTextChunk(tokens=_as_ints(tokens))])

    @classmethod
    def empty(cls) -> ModelInput:
        """Tinker has an empty input; the server needs at least one token, so this raises."""
        raise ValueError("a ModelInput needs at least one token")


class Datum(_p.Datum):
    """One training example: the input tokens and per-position targets and weights.

    ``loss_fn_inputs`` is a dict like ``{"target_tokens": ..., "weights": ...}`` whose values may
    be lists, numpy arrays or torch tensors; ``model_input`` may be a ``ModelInput`` or token ids.
    """

    @model_validator(mode="before")
    @classmethod
    def _coerce_arrays(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        mi = data.get("model_input")
        if mi is not None and not isinstance(mi, (_p.ModelInput, dict)):
            data["model_input"] = ModelInput.from_ints(mi)
        lfi = data.get("loss_fn_inputs")
        if isinstance(lfi, dict):
            data["loss_fn_inputs"] = {k: to_list(v) for k, v in lfi.items()}
        return data


class ForwardBackwardOutput(_p.ForwardBackwardResponse):
    """A ``forward_backward`` result in Tinker's shape as well as the wire one.

    ``loss`` is the server's weighted mean; ``metrics`` adds ``loss:mean`` and ``loss:sum``
    (the weighted sum of negative log-likelihoods, which Tinker scripts read), and
    ``loss_fn_outputs[i]["logprobs"]`` is the target-token log-probabilities of datum ``i``.
    """

    metrics: dict[str, float] = Field(default_factory=dict)

    @property
    def loss_fn_outputs(self) -> list[dict[str, list[float]]]:
        return [{"logprobs": lp} for lp in self.logprobs]

    @classmethod
    def from_response(
        cls, resp: _p.ForwardBackwardResponse, data: Iterable[_p.Datum]
    ) -> ForwardBackwardOutput:
        """Add Tinker's metrics, computed from the per-token logprobs and the data's weights."""
        total = 0.0
        for datum, lps in zip(data, resp.logprobs, strict=False):
            weights = datum.loss_fn_inputs.weights or [1.0] * len(lps)
            total -= sum(w * lp for w, lp in zip(weights, lps, strict=False))
        metrics = {"loss:mean": resp.loss}
        if resp.logprobs:
            metrics["loss:sum"] = total
        return cls(loss=resp.loss, logprobs=resp.logprobs, metrics=metrics)


__all__ = [
    "AdamParams",
    "Capabilities",
    "ChatMessage",
    "Checkpoint",
    "Datum",
    "EncodedTextChunk",
    "ForwardBackwardOutput",
    "JsonSchemaFormat",
    "LossFnInputs",
    "ModelInfo",
    "ModelInput",
    "ResponseFormat",
    "SampleResponse",
    "SampledSequence",
    "SamplingParams",
    "SupportedModel",
    "TrainingRun",
    "to_list",
]
