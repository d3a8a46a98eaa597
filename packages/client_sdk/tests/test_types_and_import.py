"""Types accept arrays and tensors; importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import workbench_client
from workbench_client.types import AdamParams, Datum, ModelInput, SamplingParams


def test_model_input_round_trips_ints_from_lists_and_numpy() -> None:
    assert ModelInput.from_ints([1, 2, 3]).to_ints() == [1, 2, 3]
    mi = ModelInput.from_ints(np.array([4, 5, 6], dtype=np.int64))
    assert mi.to_ints() == [4, 5, 6] and all(type(t) is int for t in mi.to_ints())


def test_datum_accepts_numpy_arrays_in_loss_fn_inputs() -> None:
    d = Datum(
        model_input=ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": np.array([2, 3, 4]), "weights": np.array([0.0, 1.0, 1.0])},
    )
    assert d.loss_fn_inputs.target_tokens == [2, 3, 4]
    assert d.loss_fn_inputs.weights == [0.0, 1.0, 1.0]


def test_datum_accepts_torch_tensors_by_duck_typing() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed in this environment")
    d = Datum(
        model_input=torch.tensor([1, 2, 3]),
        loss_fn_inputs={"target_tokens": torch.tensor([2, 3, 4]), "weights": torch.ones(3)},
    )
    assert d.model_input.to_ints() == [1, 2, 3]
    assert d.loss_fn_inputs.weights == [1.0, 1.0, 1.0]


def test_datum_rejects_a_bad_target_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="target_tokens"):
        Datum(model_input=[1, 2], loss_fn_inputs={"target_tokens": "nope"})


def test_sampling_and_adam_params_are_the_protocol_types() -> None:
    from workbench_core import protocol

    assert SamplingParams is protocol.SamplingParams
    assert AdamParams is protocol.AdamParams
    assert SamplingParams(max_tokens=3).max_tokens == 3


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(out.stdout.split())


def test_import_workbench_client_imports_no_torch_transformers_or_diffusers() -> None:
    mods = _imported_after("import workbench_client, workbench_client.types")
    assert "workbench_client" in mods
    assert not {"torch", "transformers", "diffusers"} & mods


def test_the_full_client_imports_no_torch_transformers_or_diffusers() -> None:
    mods = _imported_after(
        "from workbench_client import AsyncWorkbench, Workbench, ServiceClient, Datum"
    )
    assert "httpx" in mods  # the client really loaded
    assert not {"torch", "transformers", "diffusers"} & mods


def test_the_cli_module_imports_no_httpx_until_a_command_runs() -> None:
    mods = _imported_after("import workbench_client.cli")
    assert "workbench_client.cli" in mods
    assert "httpx" not in mods and "tokenizers" not in mods


def test_public_names_are_all_exported() -> None:
    for name in workbench_client.__all__:
        assert getattr(workbench_client, name) is not None
    expected = {"AsyncWorkbench", "Workbench", "ServiceClient", "TrainingClient", "SamplingClient"}
    assert expected <= set(workbench_client.__all__)


def test_workbench_help_and_a_commands_help_import_no_httpx() -> None:
    for argv in (["--help"], ["sample", "--help"]):
        code = (
            "from workbench_core.cli import main\n"
            "try:\n"
            f"    main.main(args={argv!r}, prog_name='workbench')\n"
            "except SystemExit:\n"
            "    pass"
        )
        mods = _imported_after(code)
        assert "httpx" not in mods, argv
    assert "workbench_client.cli" in mods  # the command's own module did load for its --help
