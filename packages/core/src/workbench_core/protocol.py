"""Wire types of the serving API: one source of truth for the server and the client.

The server validates every request body against these models (so a malformed request is a 4xx
naming the field, never a 500) and the client parses every response into them. Names are stable:
the client codes against them. Bounds that depend on a served model (context length, queue size)
are checked by the server; the static bounds here only keep absurd values off the wire.

Shapes follow Tinker's where Tinker has one (``ModelInput`` with ``chunks``, ``Datum`` with
``loss_fn_inputs``, ``AdamParams``, futures with ``request_id``) so code written for Tinker reads
naturally against Workbench.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# ---------------------------------------------------------------- errors


class ErrorDetail(BaseModel):
    """The body of every HTTP error: which kind, what went wrong, which request, which field."""

    type: str
    message: str
    request_id: str | None = None
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------- health and capabilities


class HealthResponse(BaseModel):
    """``healthz``/``readyz``: ``status`` is ``ok``, ``loading`` or ``error``."""

    status: str
    models: dict[str, str] = Field(default_factory=dict)  # model name -> loading/ready/error


ModelKind = Literal["text", "image", "vision", "training", "adapter"]


class ModelInfo(BaseModel):
    """One served model as ``capabilities`` describes it."""

    name: str
    kind: ModelKind
    context_length: int | None = None
    max_batch_size: int = 1
    max_wait_ms: float = 0.0
    max_queue_size: int = 0
    status: str = "ready"
    dtype: str | None = None
    device: str | None = None
    base_model: str | None = None  # for adapters (LoRA checkpoints)

    @property
    def model_name(self) -> str:
        return self.name


class SupportedModel(BaseModel):
    """Tinker's ``supported_models`` entry."""

    model_name: str


class Capabilities(BaseModel):
    models: list[ModelInfo]
    supported_models: list[SupportedModel] = Field(default_factory=list)
    max_request_bytes: int | None = None


class TokenizerInfo(BaseModel):
    """A text model's tokenizer, enough for a client to tokenize locally."""

    model: str
    tokenizer_json: str
    chat_template: str | None = None
    special_tokens: dict[str, Any] = Field(default_factory=dict)
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None


# ---------------------------------------------------------------- inputs


class EncodedTextChunk(BaseModel):
    type: Literal["encoded_text"] = "encoded_text"
    tokens: list[int] = Field(min_length=1)

    @field_validator("tokens")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if any(t < 0 for t in v):
            raise ValueError("token ids must be >= 0")
        return v


class ModelInput(BaseModel):
    """Token ids, as Tinker shapes them: a list of chunks (only encoded text here)."""

    chunks: list[EncodedTextChunk] = Field(min_length=1)

    @classmethod
    def from_ints(cls, tokens: list[int]) -> ModelInput:
        return cls(chunks=[EncodedTextChunk(tokens=list(tokens))])

    def to_ints(self) -> list[int]:
        return [t for c in self.chunks for t in c.tokens]

    @property
    def length(self) -> int:
        return sum(len(c.tokens) for c in self.chunks)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


# ---------------------------------------------------------------- sampling


class JsonSchemaFormat(BaseModel):
    """OpenAI's ``response_format.json_schema``: a named JSON Schema the output must match."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="response", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    # ``schema`` shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """A constraint on the generated text, enforced by constrained decoding (a token mask).

    ``type``: ``"text"`` (none), ``"json_object"`` (any JSON object), ``"json_schema"`` (the
    OpenAI shape, ``json_schema.schema``; ``strict: true`` rejects schema keywords the grammar
    compiler cannot enforce), ``"regex"`` (``regex``) or ``"grammar"`` (``grammar``, a Lark
    grammar as llguidance reads it).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema", "regex", "grammar"]
    json_schema: JsonSchemaFormat | None = None
    regex: str | None = Field(default=None, min_length=1, max_length=10_000)
    grammar: str | None = Field(default=None, min_length=1, max_length=100_000)

    @model_validator(mode="after")
    def _needs_its_field(self) -> ResponseFormat:
        needed = {"json_schema": self.json_schema, "regex": self.regex, "grammar": self.grammar}
        if self.type in needed and needed[self.type] is None:
            raise ValueError(f"type {self.type!r} needs the field {self.type!r}")
        for key, value in needed.items():
            if key != self.type and value is not None:
                raise ValueError(f"field {key!r} is only allowed with type {key!r}")
        return self


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=16, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=10.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, le=100_000)
    stop: list[str] | None = Field(default=None, max_length=16)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    # Constrained decoding: every sample's text matches this JSON schema / regex / grammar.
    response_format: ResponseFormat | None = None


class SampleRequest(BaseModel):
    """``prompt`` is text, chat messages (the model's chat template applies) or ``ModelInput``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    prompt: str | list[ChatMessage] | ModelInput
    num_samples: int = Field(default=1, ge=1, le=64)
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    stream: bool = False

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if isinstance(v, str) and not v:
            raise ValueError("prompt must not be empty")
        if isinstance(v, list) and not v:
            raise ValueError("prompt must hold at least one message")
        return v


FinishReason = Literal["stop", "length", "cancelled"]


class SampledSequence(BaseModel):
    tokens: list[int]
    text: str
    logprobs: list[float] | None = None
    finish_reason: FinishReason


class SampleResponse(BaseModel):
    model: str | None = None
    sequences: list[SampledSequence]
    prompt_tokens: int


class TokenEvent(BaseModel):
    """One streamed token (SSE event ``token``, WebSocket ``{"type": "token"}``)."""

    index: int  # which of the num_samples sequences
    token: int
    text: str


class ComputeLogprobsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    prompt: ModelInput


class ComputeLogprobsResponse(BaseModel):
    logprobs: list[float | None]


# ---------------------------------------------------------------- images and vision


class ImageGenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    steps: int = Field(default=4, ge=1, le=200)
    guidance_scale: float = Field(default=5.0, ge=0.0, le=50.0)
    width: int = Field(default=32, ge=8, le=2048, multiple_of=8)
    height: int = Field(default=32, ge=8, le=2048, multiple_of=8)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=16)


class GeneratedImage(BaseModel):
    b64_png: str


class ImageGenerateResponse(BaseModel):
    images: list[GeneratedImage]
    seed: int


class VisionGenerateRequest(BaseModel):
    """``images``: base64 PNG/JPEG bytes or ``data:image/...;base64,`` URLs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    images: list[str] = Field(min_length=1, max_length=8)
    prompt: str = Field(min_length=1, max_length=8000)
    max_tokens: int = Field(default=32, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class VisionGenerateResponse(BaseModel):
    text: str
    tokens: list[int]
    finish_reason: FinishReason


# ---------------------------------------------------------------- training


class CreateTrainingRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(min_length=1)
    rank: int = Field(default=8, ge=1, le=256)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    target_modules: list[str] | None = Field(default=None, max_length=64)


class TrainingRun(BaseModel):
    id: str
    base_model: str
    rank: int
    seed: int | None = None
    target_modules: list[str] | None = None
    step: int = 0
    created_at: str | None = None
    checkpoints: list[str] = Field(default_factory=list)


class TrainingRunList(BaseModel):
    runs: list[TrainingRun]


class LossFnInputs(BaseModel):
    """Per-position targets and weights, aligned with the model input (length must match)."""

    target_tokens: list[int] = Field(min_length=1)
    weights: list[float] | None = None


class Datum(BaseModel):
    model_input: ModelInput
    loss_fn_inputs: LossFnInputs


class ForwardBackwardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: list[Datum] = Field(min_length=1, max_length=256)
    loss_fn: Literal["cross_entropy"] = "cross_entropy"


class ForwardBackwardResponse(BaseModel):
    loss: float
    logprobs: list[list[float]] = Field(default_factory=list)


class AdamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(default=1e-4, gt=0.0, le=10.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.95, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-8, gt=0.0, le=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=10.0)
    grad_clip_norm: float | None = Field(default=None, gt=0.0)


class OptimStepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adam_params: AdamParams = Field(default_factory=AdamParams)


class OptimStepResponse(BaseModel):
    step: int


class SaveCheckpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    kind: Literal["weights", "state"] = "weights"


class Checkpoint(BaseModel):
    name: str
    kind: Literal["weights", "state"]
    run_id: str
    step: int
    model_name: str  # usable as ``model`` in sample and in /v1
    base_model: str | None = None
    created_at: str | None = None


class CheckpointList(BaseModel):
    checkpoints: list[Checkpoint]


class LoadCheckpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(min_length=1)
    with_optimizer: bool = False


class LoadCheckpointResponse(BaseModel):
    run_id: str
    checkpoint: str
    step: int


class CreateSamplerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(min_length=1)


class CreateSamplerResponse(BaseModel):
    model_name: str


# ---------------------------------------------------------------- futures


class FutureAccepted(BaseModel):
    """A POST with ``?wait=false`` answers 202 with this; retrieve the outcome later."""

    request_id: str


class RetrieveFutureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1)
    timeout: float = Field(default=30.0, ge=0.0, le=300.0)


class FutureResult(BaseModel):
    request_id: str
    status: Literal["pending", "done", "error"]
    result: Any | None = None
    error: ErrorDetail | None = None
    http_status: int | None = None
    # Latest progress a long operation reported, e.g. ``{"step": 3, "total": 20}`` for an image.
    progress: dict[str, Any] | None = None


__all__ = [
    "AdamParams",
    "Capabilities",
    "ChatMessage",
    "Checkpoint",
    "CheckpointList",
    "ComputeLogprobsRequest",
    "ComputeLogprobsResponse",
    "CreateSamplerRequest",
    "CreateSamplerResponse",
    "CreateTrainingRunRequest",
    "Datum",
    "EncodedTextChunk",
    "ErrorBody",
    "ErrorDetail",
    "FinishReason",
    "ForwardBackwardRequest",
    "ForwardBackwardResponse",
    "FutureAccepted",
    "FutureResult",
    "GeneratedImage",
    "HealthResponse",
    "ImageGenerateRequest",
    "ImageGenerateResponse",
    "JsonSchemaFormat",
    "LoadCheckpointRequest",
    "LoadCheckpointResponse",
    "LossFnInputs",
    "ModelInfo",
    "ModelInput",
    "ModelKind",
    "OptimStepRequest",
    "OptimStepResponse",
    "ResponseFormat",
    "RetrieveFutureRequest",
    "SampleRequest",
    "SampleResponse",
    "SampledSequence",
    "SamplingParams",
    "SaveCheckpointRequest",
    "SupportedModel",
    "TokenEvent",
    "TokenizerInfo",
    "TrainingRun",
    "TrainingRunList",
    "VisionGenerateRequest",
    "VisionGenerateResponse",
]
