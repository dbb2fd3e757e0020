"""Checks that two models speak the same tokens."""

from __future__ import annotations

import copy
from pathlib import Path

from tokenizers import Regex, decoders

from .errors import ConfigError

SPECIAL_TOKENS = ("eos_token", "pad_token", "bos_token", "unk_token")
"""The special tokens whose roles must agree: EOS ends an episode, padding fills observations."""

LEADING_SPACE_DECODER = decoders.Replace(Regex("^"), " ")
"""Decodes every token as a space and the token (``^`` matches once, at the start of each token), as GPT-2's tokens
carry their space: a decoder-less tokenizer's ``" ".join(tokens)`` with the spaces before the words instead of
between them."""


def check_same_tokenizer(tokenizer, expected, name: str, expected_name: str) -> None:
    """Raise a :class:`rlhf_gym.errors.ConfigError` unless both tokenizers map the same strings to the same ids and
    give the special tokens (EOS, padding, ...) the same ids.

    Two vocabularies of the same size but different ids would silently decode a policy's actions as other words.
    """
    vocab, expected_vocab = tokenizer.get_vocab(), expected.get_vocab()
    if vocab != expected_vocab:
        differing = sorted(t for t in set(vocab) | set(expected_vocab) if vocab.get(t) != expected_vocab.get(t))
        examples = ", ".join(f"{t!r}: {vocab.get(t)} vs {expected_vocab.get(t)}" for t in differing[:3])
        raise ConfigError(f"the tokenizer of {name} differs from {expected_name} ({len(vocab)} vs {len(expected_vocab)} "
                          f"tokens; {len(differing)} tokens differ, e.g. {examples}); the policy's actions would decode "
                          "to other words")
    for role in SPECIAL_TOKENS:
        token, expected_token = getattr(tokenizer, role), getattr(expected, role)
        if token != expected_token:
            ids = getattr(tokenizer, f"{role}_id"), getattr(expected, f"{role}_id")
            raise ConfigError(f"the tokenizer of {name} differs from {expected_name} in its {role}: {token!r} (id {ids[0]}) "
                              f"vs {expected_token!r} (id {ids[1]})")


def save_tokenizer_for_export(tokenizer, directory: str | Path) -> None:
    """``tokenizer.save_pretrained(directory)`` for an exported policy, so that text generated with it reads like the
    task's text.

    A task's word-level tokenizer has no decoder: ``decode`` joins the tokens with spaces, so a continuation decoded on
    its own starts with no space, and ``pipeline("text-generation")``, which appends the decoded new tokens to the
    prompt, glues its first word onto the prompt's last one ("the pizza wasvivid !"). The export gives each token its
    leading space (:data:`LEADING_SPACE_DECODER`) and turns ``clean_up_tokenization_spaces`` off (the task languages
    put spaces before punctuation). It encodes as before, and decodes any ids to the env's text for them
    (``decode(ids, skip_special_tokens=True).strip()``) with one space in front. Tokenizers with a decoder of their
    own (BPE, SentencePiece, ...) and Python tokenizers are saved as they are; the env's tokenizer is not changed.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.decoder is not None:
        tokenizer.save_pretrained(directory)
        return
    exported = copy.deepcopy(tokenizer)
    exported.backend_tokenizer.decoder = LEADING_SPACE_DECODER
    # save_pretrained writes the init kwargs, not the attribute
    exported.init_kwargs["clean_up_tokenization_spaces"] = False
    exported.save_pretrained(directory)
