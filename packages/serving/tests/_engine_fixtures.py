"""Engines loaded once per test module from the tiny presets (real ``from_pretrained``).

The server engineer's ``conftest.py`` points ``WORKBENCH_HOME``/``WORKBENCH_MODELS_DIR`` at
session temp dirs when they are unset, so presets are built once per session.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def text_engine() -> object:
    from workbench_serving.engines.text import TextEngine

    engine = TextEngine("tiny-llama", device="cpu", dtype="float32")
    engine.load()
    return engine
