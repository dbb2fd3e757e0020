"""The word-level Hugging Face tokenizer of the reviews language."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from ..world import word_level_tokenizer
from .grammar import vocabulary


def build_tokenizer(model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` with one id per word (ids 0, 1, 2 are pad, eos, unk)."""
    return word_level_tokenizer(vocabulary(), model_max_length)
