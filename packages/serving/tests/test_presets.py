"""Tiny presets: deterministic, atomic, and loadable through plain ``from_pretrained``."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import _engine_fixtures  # noqa: F401  (offline env)
import pytest

from workbench_serving import presets


def _weights_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*.safetensors")):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("name", presets.PRESETS)
def test_two_builds_of_a_preset_have_identical_weights_and_tokenizer(
    name: str, tmp_path: Path
) -> None:
    a = presets.ensure_preset(name, tmp_path / "a")
    b = presets.ensure_preset(name, tmp_path / "b")
    assert a != b
    assert list(a.rglob("*.safetensors"))
    assert _weights_hash(a) == _weights_hash(b)
    tok_a = sorted(a.rglob("tokenizer.json"))[0].read_text()
    tok_b = sorted(b.rglob("tokenizer.json"))[0].read_text()
    assert tok_a == tok_b


def test_ensure_preset_reuses_an_existing_build(tmp_path: Path) -> None:
    first = presets.ensure_preset("tiny-llama", tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = presets.ensure_preset("tiny-llama", tmp_path)
    assert again == first
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp


def test_racing_builders_both_get_one_complete_preset(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(presets.ensure_preset("tiny-llama", tmp_path))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results[0] == results[1]
    assert json.loads((results[0] / "workbench_preset.json").read_text())["preset"] == "tiny-llama"
    # No temporary build directory is left behind.
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]


def test_resolve_model_maps_presets_and_passes_paths_and_hub_ids_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path / "models"))
    built = presets.resolve_model("tiny-llama")
    assert isinstance(built, Path) and built.parent == tmp_path / "models"
    assert presets.resolve_model(str(tmp_path)) == tmp_path
    assert presets.resolve_model("some-org/some-model") == "some-org/some-model"


def test_models_dir_falls_back_to_workbench_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKBENCH_MODELS_DIR", raising=False)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    assert presets.models_dir() == tmp_path / "models"


def test_unknown_preset_is_a_key_error_naming_the_presets(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="tiny-llama"):
        presets.ensure_preset("tiny-nothing", tmp_path)


def test_tiny_llama_tokenizer_loads_with_specials_and_chat_template(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(presets.ensure_preset("tiny-llama", tmp_path))
    assert tok.bos_token == "<s>" and tok.eos_token == "</s>"
    assert tok.pad_token == "<pad>" and tok.unk_token == "<unk>"
    text = "The robot paints the sky."
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    # A BPE trained on the corpus merges common words into single tokens.
    assert len(ids) < len(text)
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered.endswith("<|im_start|>assistant\n")


def test_tiny_qwen_vl_special_token_ids_match_its_config(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    path = presets.ensure_preset("tiny-qwen-vl", tmp_path)
    tok = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    assert tok.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tok.convert_tokens_to_ids("<|video_pad|>") == config.video_token_id
    assert tok.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    assert tok.convert_tokens_to_ids("<|vision_end|>") == config.vision_end_token_id
    assert len(tok("<|vision_start|><|image_pad|><|vision_end|>")["input_ids"]) == 3
