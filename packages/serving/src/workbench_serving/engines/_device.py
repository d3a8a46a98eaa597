"""Pick the device and dtype an engine runs on.

One rule for every engine so that a model loads the same way everywhere: CUDA with bfloat16
when a GPU is present (bf16 halves memory and is what current checkpoints are trained in),
otherwise CPU with float32 (CPU bf16 matmuls are slow and lose precision for no gain).
Both can be overridden per engine or through ``WORKBENCH_DEVICE`` / ``WORKBENCH_DTYPE``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to use: the argument, else ``WORKBENCH_DEVICE``, else CUDA if present.

    Raises:
        ValueError: the requested device does not exist on this machine.
    """
    import torch

    requested = device if device is not None else os.environ.get("WORKBENCH_DEVICE") or None
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {dev} requested but CUDA is not available")
    return dev


def resolve_dtype(
    dtype: str | torch.dtype | None = None, device: torch.device | None = None
) -> torch.dtype:
    """Return the dtype to use: the argument, else ``WORKBENCH_DTYPE``, else by device.

    Raises:
        ValueError: an unknown dtype name.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    requested = dtype if dtype is not None else os.environ.get("WORKBENCH_DTYPE") or None
    if requested is None or requested == "auto":
        dev = device if device is not None else resolve_device()
        return torch.bfloat16 if dev.type == "cuda" else torch.float32
    name = _DTYPES.get(str(requested).lower().removeprefix("torch."))
    if name is None:
        raise ValueError(f"unknown dtype {requested!r}; use one of {sorted(set(_DTYPES))}")
    result: torch.dtype = getattr(torch, name)
    return result


def pick_device(
    device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """Return ``(device, dtype)``: CUDA + bfloat16 when available, else CPU + float32."""
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev)


def apply_thread_setting() -> int | None:
    """Apply ``WORKBENCH_TORCH_THREADS`` (torch intra-op threads) if set; return the value.

    Small models on a busy CPU spend most of a step synchronising threads: a tiny-llama
    forward pass measured ~12 ms on one thread and 150-400 ms on two when other processes kept
    both cores busy. Engines call this on load so a deployment (or CI) can pin the count
    without code; unset, torch's own default stands.

    Raises:
        ValueError: the variable is not a positive integer.
    """
    raw = os.environ.get("WORKBENCH_TORCH_THREADS")
    if not raw:
        return None
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"WORKBENCH_TORCH_THREADS must be a positive integer, not {raw!r}")
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
