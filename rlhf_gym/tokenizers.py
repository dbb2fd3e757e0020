"""Checks that two models speak the same tokens."""

from __future__ import annotations

from .errors import ConfigError


def check_same_tokenizer(tokenizer, expected, name: str, expected_name: str) -> None:
    """Raise a :class:`rlhf_gym.errors.ConfigError` unless both tokenizers map the same strings to the same ids.

    Two vocabularies of the same size but different ids would silently decode a policy's actions as other words.
    """
    vocab, expected_vocab = tokenizer.get_vocab(), expected.get_vocab()
    if vocab == expected_vocab:
        return
    differing = sorted(t for t in set(vocab) | set(expected_vocab) if vocab.get(t) != expected_vocab.get(t))
    examples = ", ".join(f"{t!r}: {vocab.get(t)} vs {expected_vocab.get(t)}" for t in differing[:3])
    raise ConfigError(f"the tokenizer of {name} differs from {expected_name} ({len(vocab)} vs {len(expected_vocab)} "
                      f"tokens; {len(differing)} tokens differ, e.g. {examples}); the policy's actions would decode "
                      "to other words")
