"""The client-side tokenizer: the server's own ``tokenizer.json`` loaded with ``tokenizers``.

Built from the exact files the server serves (not a guess by model name), so ``encode`` and
``decode`` give the server's token ids and text, without transformers on the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from workbench_core.protocol import TokenizerInfo

from ..types import to_list


class Tokenizer:
    """A fast tokenizer with the ``encode``/``decode`` shape of a Hugging Face tokenizer.

    Args:
        info: the server's ``models/{name}/tokenizer`` answer.
    """

    def __init__(self, info: TokenizerInfo) -> None:
        from tokenizers import Tokenizer as _HFTokenizer

        self.info = info
        self._tok = _HFTokenizer.from_str(info.tokenizer_json)
        self.chat_template = info.chat_template
        self.bos_token_id = info.bos_token_id
        self.eos_token_id = info.eos_token_id
        self.pad_token_id = info.pad_token_id

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text`` (with the model's special tokens unless told otherwise)."""
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Iterable[Any], skip_special_tokens: bool = True) -> str:
        """Text of token ids (a list, numpy array or tensor)."""
        seq = to_list(ids)
        return str(self._tok.decode([int(i) for i in seq], skip_special_tokens=skip_special_tokens))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str | None]:
        return [self._tok.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int | None]:
        return [self._tok.token_to_id(t) for t in tokens]


__all__ = ["Tokenizer"]
