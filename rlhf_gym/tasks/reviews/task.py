"""The embedded default task: reviews of a procedural language, with a gold reward."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from ..base import Task
from .gold import gold_reward
from .grammar import COPULAS, DETERMINERS, NOUNS, is_well_formed

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
EVAL_FRACTION = 0.2
SPLIT_SEED = 1234


def all_prompts() -> list[str]:
    """Every review opening ``determiner noun copula`` (8 x 80 x 8 = 5120)."""
    return [" ".join(words) for words in itertools.product(DETERMINERS, NOUNS, COPULAS)]


def prompt_split() -> tuple[list[str], list[str]]:
    """The fixed ``(train, eval)`` split of the openings (80% / 20%, seed 1234)."""
    prompts = all_prompts()
    random.Random(SPLIT_SEED).shuffle(prompts)
    n_eval = int(len(prompts) * EVAL_FRACTION)
    return prompts[n_eval:], prompts[:n_eval]


def well_formed(prompt: str, response: str) -> bool:
    return is_well_formed(f"{prompt} {response}")


def make_reviews_task(artifacts_dir: str | Path | None = None) -> Task:
    train, evaluation = prompt_split()
    return Task(
        name="reviews",
        artifacts_dir=Path(artifacts_dir) if artifacts_dir else ARTIFACTS_DIR,
        train_prompts=train,
        eval_prompts=evaluation,
        gold_reward=gold_reward,
        is_well_formed=well_formed,
    )
