"""Checks that two models speak the same tokens."""

from __future__ import annotations

from .errors import ConfigError

SPECIAL_TOKENS = ("eos_token", "pad_token", "bos_token", "unk_token")
"""The special tokens whose roles must agree: EOS ends an episode, padding fills observations."""


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
