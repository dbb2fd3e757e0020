"""The word-level Hugging Face tokenizer of the reviews language."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .grammar import vocabulary

PAD_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN]


def build_tokenizer(model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` with one id per word (ids 0, 1, 2 are pad, eos, unk)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
    )
