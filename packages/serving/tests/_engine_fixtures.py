"""Engines loaded once per test module from the tiny presets (real ``from_pretrained``).

The server engineer's ``conftest.py`` points ``WORKBENCH_HOME``/``WORKBENCH_MODELS_DIR`` at
session temp dirs when they are unset, so presets are built once per session.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def quiet_torch() -> None:
    """One intra-op thread: the tiny models are all sync overhead, and CI's 2 cores are shared.

    Measured here: a tiny-llama forward pass takes ~12 ms on one thread and 150-400 ms on two
    when other processes keep the cores busy.
    """
    import torch

    torch.set_num_threads(1)


def text_engine() -> Any:
    from workbench_serving.engines.text import TextEngine

    quiet_torch()
    engine = TextEngine("tiny-llama", device="cpu", dtype="float32")
    engine.load()
    return engine


def image_engine() -> Any:
    from workbench_serving.engines.image import ImageEngine

    quiet_torch()
    engine = ImageEngine("tiny-sd", device="cpu", dtype="float32")
    engine.load()
    return engine


def vision_engine() -> Any:
    from workbench_serving.engines.vision import VisionEngine

    quiet_torch()
    engine = VisionEngine("tiny-qwen-vl", device="cpu", dtype="float32")
    engine.load()
    return engine
