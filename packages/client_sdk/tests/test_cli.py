"""The CLI commands against the real server, through click's runner."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SERVED_MODELS, TEXT_MODEL, TRAINING_MODELS

from workbench_client import cli

pytestmark = pytest.mark.slow


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(args[0] and getattr(cli, args[0]), list(args[1:]))
    return result.exit_code, result.output


def test_health_json(server: str) -> None:
    code, out = _run("health", "--base-url", server, "--format", "json")
    assert code == 0, out
    assert json.loads(out)["status"] == "ok"


def test_models_table_lists_the_text_model(server: str) -> None:
    code, out = _run("models", "--base-url", server)
    assert code == 0, out
    assert TEXT_MODEL in out


def test_sample_json_returns_sequences(server: str) -> None:
    code, out = _run(
        "sample", "Hello", "--base-url", server, "--format", "json", "-n", "2", "--max-tokens", "3"
    )
    assert code == 0, out
    assert len(json.loads(out)["sequences"]) == 2


def test_sample_stream_json_prints_tokens_then_done(server: str) -> None:
    code, out = _run(
        "sample", "Hello", "--stream", "--base-url", server, "--format", "json", "--max-tokens", "3"
    )
    assert code == 0, out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [ln["event"] for ln in lines][-1] == "done"
    assert [ln["token"] for ln in lines[:-1]] == lines[-1]["sequences"][0]["tokens"]


def test_an_api_error_is_a_one_line_message_and_exit_1(server: str) -> None:
    code, out = _run("sample", "hi", "--model", "no-such-model", "--base-url", server)
    assert code == 1
    assert "404" in out and "no-such-model" in out and "Traceback" not in out


@pytest.mark.skipif("tiny-sd" not in SERVED_MODELS, reason="test server started without tiny-sd")
def test_image_writes_a_png(server: str, tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    code, out = _run(
        "image",
        "a red square",
        "-o",
        str(target),
        "--seed",
        "1",
        "--base-url",
        server,
        "--format",
        "json",
    )
    assert code == 0, out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out)["files"] == [str(target)]


@pytest.mark.skipif(
    "tiny-qwen-vl" not in SERVED_MODELS, reason="test server started without tiny-qwen-vl"
)
def test_vision_answers_about_an_image_file(server: str, tmp_path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="PNG")
    path = tmp_path / "red.png"
    path.write_bytes(buf.getvalue())
    code, out = _run(
        "vision",
        str(path),
        "What colour?",
        "--max-tokens",
        "3",
        "--base-url",
        server,
        "--format",
        "json",
    )
    assert code == 0, out
    assert isinstance(json.loads(out)["text"], str)


def test_runs_list_json_is_a_list(server: str) -> None:
    code, out = _run("runs", "list", "--base-url", server, "--format", "json")
    assert code == 0, out
    assert isinstance(json.loads(out), list)


def test_runs_info_of_an_unknown_run_is_not_found(server: str) -> None:
    code, out = _run("runs", "info", "no-such-run", "--base-url", server)
    assert code == 1 and "404" in out


@pytest.mark.skipif(not TRAINING_MODELS, reason="the test server was started without training")
def test_runs_info_and_checkpoints_list_show_a_trained_run(server: str) -> None:
    from workbench_client import Workbench

    with Workbench(base_url=server) as wb:
        run = wb.training.create_run(TEXT_MODEL, rank=2, seed=0)
        wb.training.save_checkpoint(run.id, "cli-ckpt")
    code, out = _run("runs", "info", run.id, "--base-url", server, "--format", "json")
    assert code == 0, out
    assert json.loads(out)["id"] == run.id
    code, out = _run("checkpoints", "list", run.id, "--base-url", server, "--format", "json")
    assert code == 0, out
    assert [c["name"] for c in json.loads(out)] == ["cli-ckpt"]
    code, out = _run("runs", "list", "--base-url", server)
    assert code == 0 and run.id in out
