"""Device and dtype picking: CUDA + bf16 when present, else CPU + fp32; overridable."""

from __future__ import annotations

import pytest
import torch

from workbench_serving.engines import pick_device, resolve_device, resolve_dtype


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_DEVICE", raising=False)
    monkeypatch.delenv("WORKBENCH_DTYPE", raising=False)


def test_default_follows_the_hardware() -> None:
    dev, dtype = pick_device()
    if torch.cuda.is_available():
        assert (dev.type, dtype) == ("cuda", torch.bfloat16)
    else:
        assert (dev.type, dtype) == ("cpu", torch.float32)


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_DTYPE", "float16")
    assert pick_device("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    assert pick_device("cpu") == (torch.device("cpu"), torch.float16)


def test_environment_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")
    monkeypatch.setenv("WORKBENCH_DTYPE", "torch.bfloat16")
    assert pick_device() == (torch.device("cpu"), torch.bfloat16)


def test_auto_means_the_default() -> None:
    assert resolve_device("auto") == resolve_device()
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype(torch.float16) == torch.float16


def test_unknown_dtype_is_a_value_error_listing_the_choices() -> None:
    with pytest.raises(ValueError, match="bfloat16"):
        resolve_dtype("int3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_thread_setting_is_applied_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench_serving.engines import apply_thread_setting

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("WORKBENCH_TORCH_THREADS", raising=False)
        assert apply_thread_setting() is None
        assert torch.get_num_threads() == before
        monkeypatch.setenv("WORKBENCH_TORCH_THREADS", "1")
        assert apply_thread_setting() == 1
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("WORKBENCH_TORCH_THREADS", "zero")
        with pytest.raises(ValueError, match="WORKBENCH_TORCH_THREADS"):
            apply_thread_setting()
    finally:
        torch.set_num_threads(before)
