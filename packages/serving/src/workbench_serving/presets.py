"""Tiny model presets built deterministically from configs, so Workbench runs with no network.

A preset is a real model in the library's own on-disk format, only small and random: its
weights come from ``torch.manual_seed`` and its tokenizer is a byte-level BPE trained here on a
built-in English corpus. ``ensure_preset`` builds it once under the models directory and the
engines then load it with ``from_pretrained`` exactly as they would a hub checkpoint, so the
code path under test is the production one.

Building is atomic: everything is written to a temporary sibling directory which is renamed
into place at the end. ``rename`` of a directory onto a missing path is atomic on POSIX, so two
processes racing to build the same preset both succeed and one of the two copies wins; a
reader never sees a half-written model.

Presets:

- ``tiny-llama``: a 2-layer ``LlamaForCausalLM`` (hidden 64) with a ChatML-style chat template.
- ``tiny-sd``: a ``StableDiffusionPipeline`` (UNet, VAE, CLIP text encoder, DDIM scheduler);
  its tokenizer is the same byte-level BPE, padded to 77 tokens as CLIP's is, saved as a
  ``PreTrainedTokenizerFast`` (the pipeline only calls the generic tokenizer API).
- ``tiny-qwen-vl``: a ``Qwen2_5_VLForConditionalGeneration`` with its processor; the tokenizer
  carries ``<|vision_start|>``, ``<|image_pad|>``, ``<|vision_end|>`` ... at the ids the config
  names.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "PRESETS",
    "PRESET_KINDS",
    "ensure_preset",
    "is_preset",
    "models_dir",
    "resolve_model",
]

# Bumped when a preset's recipe changes, so an old build on disk is not reused.
PRESET_VERSION = 2

PRESET_KINDS: dict[str, str] = {
    "tiny-llama": "text",
    "tiny-sd": "image",
    "tiny-qwen-vl": "vision",
}
PRESETS = tuple(PRESET_KINDS)

_SEED = 1234

# A small built-in corpus: enough English for a 512-token BPE to learn real merges.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model can still learn the shape of words.
Once upon a time there was a little robot who wanted to paint the sky. Every morning it climbed
the hill behind the village and looked at the clouds. The clouds were white, grey and sometimes
pink when the sun was rising. The robot asked the baker, the teacher and the fisherman what
colour the sky should be. The baker said the sky should be golden like fresh bread. The teacher
said the sky should be blue because that is what the books say. The fisherman said the sky
should be the colour of the sea before a storm. The robot thought about all of their answers
and decided to paint a different sky every day of the week.
Machine learning models are trained on data. A language model predicts the next token given the
tokens before it. Training adjusts the weights so that the probability of the correct token goes
up. Sampling draws tokens from the predicted distribution, one at a time, with a temperature that
makes the distribution sharper or flatter. Greedy decoding always picks the most likely token.
Top-p sampling keeps the smallest set of tokens whose probabilities add up to p.
Hello! How are you today? I am fine, thank you. What would you like to talk about?
Please write a short poem about the ocean. The ocean is wide, the ocean is deep, the waves are
singing the shore to sleep. Describe this image. The image shows a red square on a white
background. There is a cat sitting on the mat. There are two dogs playing in the park.
user assistant system question answer image picture photo colour color red green blue yellow
one two three four five six seven eight nine ten hundred thousand first second third last
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of
foolishness. All happy families are alike; each unhappy family is unhappy in its own way.
In the beginning the universe was created. This has made a lot of people very angry and been
widely regarded as a bad move. The sun rose over the mountains and the birds began to sing.
"""

# ChatML with Hermes/Qwen-style function calling: ``tools`` are listed in a system turn (name and
# parameter schema only: a tiny model has little context), an assistant's ``tool_calls`` are
# written as ``<tool_call>`` blocks and tool results as ``<tool_response>`` user turns. Without
# tools the rendering is plain ChatML.
_CHATML_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}{{ '<|im_start|>system\\n' }}"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n' }}{% endif %}"
    "{{ 'Tools:' }}{% for tool in tools %}"
    "{% set fn = tool['function'] if tool['function'] is defined else tool %}"
    "{{ '\\n' + fn['name'] + ' ' }}{{ (fn['parameters'] or {}) | tojson }}{% endfor %}"
    '{{ \'\\nCall: <tool_call>{"name": ..., "arguments": {...}}</tool_call><|im_end|>\\n\' }}'
    "{% endif %}"
    "{% for message in messages %}"
    "{% if tools and loop.first and message['role'] == 'system' %}"
    "{% elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{% for call in message['tool_calls'] %}"
    "{% set fn = call['function'] if call['function'] is defined else call %}"
    "{{ '<tool_call>\\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' }}"
    "{{ fn['arguments'] | tojson }}{{ '}\\n</tool_call>' }}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Qwen2-VL's own template shape: image parts become vision_start + image_pad + vision_end,
# which the processor then expands to one pad token per merged patch.
_QWEN_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<unk>",
]


def models_dir() -> Path:
    """Where presets live: ``WORKBENCH_MODELS_DIR``, else ``WORKBENCH_HOME/models``."""
    from workbench_core.config import models_dir as core_models_dir

    return Path(core_models_dir(create=False))


def _workbench_home() -> Path:
    from workbench_core.config import workbench_home

    return Path(workbench_home(create=False))


def is_preset(name: str) -> bool:
    """Whether ``name`` is one of the built-in tiny presets."""
    return name in PRESET_KINDS


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path | str:
    """Map a preset name to its built directory; pass a local path or hub id through.

    Args:
        name_or_path: a preset name (``tiny-llama``), a local directory, or a hub id.

    Returns:
        The preset's directory (built on first use), the local path as a ``Path``, or the hub
        id unchanged for ``from_pretrained`` to resolve.
    """
    text = os.fspath(name_or_path)
    if is_preset(text):
        return ensure_preset(text)
    path = Path(text).expanduser()
    if path.exists():
        return path
    return text


def ensure_preset(name: str, root: Path | None = None) -> Path:
    """Build preset ``name`` under the models directory if it is not there yet; return its path.

    Args:
        name: one of ``PRESETS``.
        root: models directory override (default ``models_dir()``).

    Raises:
        KeyError: ``name`` is not a preset.
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown preset {name!r}; presets are {', '.join(PRESETS)}")
    base = root if root is not None else models_dir()
    final = base / f"{name}-v{PRESET_VERSION}"
    if (final / "workbench_preset.json").exists():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-build-", dir=base))
    try:
        _BUILDERS[name](tmp)
        (tmp / "workbench_preset.json").write_text(
            json.dumps({"preset": name, "version": PRESET_VERSION, "seed": _SEED})
        )
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished first (the target exists and is not empty): use theirs.
            if not (final / "workbench_preset.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---------------------------------------------------------------- tokenizers


def _train_bpe(specials: list[str], vocab_size: int, *, bos: str | None) -> Any:
    """Train a byte-level BPE on the built-in corpus; specials get ids 0..len-1 in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _llama_tokenizer() -> Any:
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(_LLAMA_SPECIALS, 512, bos="<s>"),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=1024,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = _CHATML_TEMPLATE
    return tok


def _qwen_tokenizer() -> Any:
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(_QWEN_SPECIALS, 512, bos=None),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=[s for s in _QWEN_SPECIALS if s not in ("<unk>",)],
        model_max_length=512,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = _QWEN_VL_TEMPLATE
    return tok


# ---------------------------------------------------------------- builders


def _build_tiny_llama(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = _llama_tokenizer()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # Room for a tools manifest plus a forced call (this tokenizer spends ~0.7 tokens a
        # character on JSON); RoPE has no position weights, so the weights are unchanged.
        max_position_embeddings=1024,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=[tok.eos_token_id, im_end],
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=[tok.eos_token_id, im_end],
        pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _build_tiny_sd(out: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = _llama_tokenizer()
    # The pipeline pads every prompt to model_max_length, CLIP-style.
    tok.model_max_length = 77
    tok.padding_side = "right"
    tok.chat_template = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        unet = UNet2DConditionModel(
            block_out_channels=(4, 8),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=2,
        )
        vae = AutoencoderKL(
            block_out_channels=[4, 8],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            latent_channels=4,
            norm_num_groups=2,
            sample_size=32,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(tok),
                max_position_embeddings=77,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                projection_dim=32,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)


def _build_tiny_qwen_vl(out: Path) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
    )

    tok = _qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    text_config = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "vocab_size": len(tok),
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]},
        "bos_token_id": None,
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "fullatt_block_indexes": [1],
        "window_size": 112,
    }
    config = Qwen2_5_VLConfig(  # type: ignore[call-arg]
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        vocab_size=len(tok),
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    image_processor = Qwen2VLImageProcessor(
        min_pixels=28 * 28,
        max_pixels=112 * 112,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )
    model.save_pretrained(out)
    # The processor's parts are saved one by one rather than through Qwen2_5_VLProcessor: its
    # constructor insists on a video processor, which needs torchvision. The files are the ones
    # ProcessorMixin.save_pretrained writes, so AutoProcessor loads them where torchvision is.
    tok.save_pretrained(out)
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(_QWEN_VL_TEMPLATE)
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": "Qwen2_5_VLProcessor"}, indent=2) + "\n"
    )


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-llama": _build_tiny_llama,
    "tiny-sd": _build_tiny_sd,
    "tiny-qwen-vl": _build_tiny_qwen_vl,
}
