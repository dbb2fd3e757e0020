"""Labelers: who decides which of two responses is better (Stage 1).

A labeler maps ``(prompt, response_a, response_b)`` to a :class:`Judgement`: ``"a"``, ``"b"``, ``"tie"``
or ``"skip"``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Literal, Protocol

from .checks import check_temperature
from .errors import ConfigError

Judgement = Literal["a", "b", "tie", "skip"]


class Labeler(Protocol):
    """Judges one pair. A labeler that draws random numbers also has ``seed_pair(pair_id)``, which the collector
    calls before each pair, so that a pair's judgement does not depend on the pairs judged before it (a resumed
    collection writes what an uninterrupted one would)."""

    name: str

    def __call__(self, prompt: str, response_a: str, response_b: str) -> Judgement: ...


class SimulatedAnnotator:
    """A noisy annotator who prefers by Bradley–Terry sampling on a gold reward.

    ``P(a > b) = sigmoid((G(x, a) - G(x, b)) / temperature)``; then, with probability ``flip_rate``, the
    label is flipped (a careless click). ``temperature -> 0`` and ``flip_rate = 0`` give a perfect judge.

    :param gold_reward: ``G(prompt, response) -> float``.
    :param temperature: Bradley–Terry temperature of the annotator's choices.
    :param flip_rate: probability of flipping the sampled label.
    :param seed: seed of the annotator's own random stream (per pair after :meth:`seed_pair`).
    """

    def __init__(self, gold_reward: Callable[[str, str], float], temperature: float = 0.5, flip_rate: float = 0.1,
                 seed: int = 0, name: str = "simulated"):
        check_temperature(temperature, "temperature", sampling=False)
        if not 0.0 <= flip_rate <= 1.0:
            raise ConfigError(f"flip_rate must be in [0, 1], got {flip_rate}")
        self.gold_reward, self.temperature, self.flip_rate = gold_reward, temperature, flip_rate
        self.seed = seed
        self.rng = random.Random(seed)
        self.name = name

    def seed_pair(self, pair_id: int) -> None:
        """Judge the next pair from a random stream of its own, seeded by ``(seed, pair_id)``."""
        self.rng = random.Random(f"{self.seed}/{pair_id}")  # a str seed is hashed with SHA-512: stable across runs

    def preference_probability(self, prompt: str, response_a: str, response_b: str) -> float:
        delta = (self.gold_reward(prompt, response_a) - self.gold_reward(prompt, response_b)) / self.temperature
        return 1.0 / (1.0 + math.exp(-max(min(delta, 50.0), -50.0)))

    def __call__(self, prompt: str, response_a: str, response_b: str) -> Judgement:
        prefers_a = self.rng.random() < self.preference_probability(prompt, response_a, response_b)
        if self.rng.random() < self.flip_rate:
            prefers_a = not prefers_a
        return "a" if prefers_a else "b"


class TerminalLabeler:
    """A person at the terminal: shows both responses and reads ``1``, ``2``, ``t`` (tie) or ``s`` (skip)."""

    KEYS: dict[str, Judgement] = {"1": "a", "2": "b", "t": "tie", "s": "skip"}

    def __init__(self, name: str = "human", read: Callable[[str], str] = input, write: Callable[[str], None] = print):
        self.name, self.read, self.write = name, read, write

    def __call__(self, prompt: str, response_a: str, response_b: str) -> Judgement:
        self.write(f"\nPROMPT: {prompt}\n  [1] {response_a}\n  [2] {response_b}")
        while True:
            key = self.read("Better? 1 / 2 / t(ie) / s(kip): ").strip().lower()
            if key in self.KEYS:
                return self.KEYS[key]
            self.write(f"  please answer one of {', '.join(self.KEYS)} (got {key!r})")
