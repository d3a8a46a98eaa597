"""Engines: the models the scheduler drives, one ``run_batch(list) -> list`` each.

Importing this package does not import torch; each engine imports its heavy libraries when it
loads.
"""

from workbench_serving.engines._device import (
    apply_thread_setting,
    pick_device,
    resolve_device,
    resolve_dtype,
)
from workbench_serving.engines.base import (
    AdamParams,
    CheckpointInfo,
    Engine,
    EngineError,
    EngineKind,
    ForwardBackwardResult,
    ImageItem,
    ImageResult,
    LogprobsItem,
    LogprobsResult,
    RunInfo,
    SampledSequence,
    SampleItem,
    SampleResult,
    TrainingDatum,
    TrainingOp,
    TrainingOpKind,
    VisionItem,
    VisionResult,
)
from workbench_serving.engines.constraints import (
    ConstraintSpec,
    GrammarCompiler,
    TokenConstraint,
    apply_token_constraints,
)
from workbench_serving.engines.image import ImageEngine
from workbench_serving.engines.text import TextEngine, row_seed
from workbench_serving.engines.training import (
    TrainingEngine,
    checkpoint_model_name,
    checkpoints_dir,
)
from workbench_serving.engines.vision import VisionEngine

__all__ = [
    "AdamParams",
    "CheckpointInfo",
    "ConstraintSpec",
    "Engine",
    "EngineError",
    "EngineKind",
    "ForwardBackwardResult",
    "GrammarCompiler",
    "ImageEngine",
    "ImageItem",
    "ImageResult",
    "LogprobsItem",
    "LogprobsResult",
    "RunInfo",
    "SampleItem",
    "SampleResult",
    "SampledSequence",
    "TextEngine",
    "TokenConstraint",
    "TrainingDatum",
    "TrainingEngine",
    "TrainingOp",
    "TrainingOpKind",
    "VisionEngine",
    "VisionItem",
    "VisionResult",
    "apply_thread_setting",
    "apply_token_constraints",
    "checkpoint_model_name",
    "checkpoints_dir",
    "pick_device",
    "resolve_device",
    "resolve_dtype",
    "row_seed",
]
