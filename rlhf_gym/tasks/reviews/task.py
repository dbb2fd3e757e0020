"""The embedded default task: reviews of a procedural language, with a gold reward (``RLHF-v0``, frozen)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from ..world import TaskWorld
from .gold import gold_reward
from .grammar import COPULAS, DETERMINERS, NOUNS, ReviewGrammar, is_well_formed, vocabulary

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
_GRAMMAR = ReviewGrammar()


def all_prompts() -> list[str]:
    """Every review opening ``determiner noun copula`` (8 x 80 x 8 = 5120)."""
    return [" ".join(words) for words in itertools.product(DETERMINERS, NOUNS, COPULAS)]


def well_formed(prompt: str, response: str) -> bool:
    return is_well_formed(f"{prompt} {response}")


def sample_text(rng: random.Random) -> tuple[str, str]:
    """One review of the grammar as ``(opening, continuation)``."""
    return _GRAMMAR.sample(rng)


WORLD = TaskWorld(name="reviews", vocabulary=tuple(vocabulary()), sample_text=sample_text, all_prompts=all_prompts,
                  gold_reward=gold_reward, is_well_formed=well_formed, artifacts_dir=ARTIFACTS_DIR)
"""Unbiased noisy annotator, no gold ceiling: the task of the published results, kept exactly as it was."""
