"""Labelers: who decides which of two responses is better (Stage 1).

A labeler maps ``(prompt, response_a, response_b)`` to a :class:`Judgement`: ``"a"``, ``"b"``, ``"tie"``
or ``"skip"``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from .checks import check_temperature
from .errors import ConfigError

Judgement = Literal["a", "b", "tie", "skip"]
UTILITY_TIE = 1e-9
"""Utility differences at most this large are ties (for an annotator that labels them)."""
TIE_POLICIES = ("coin", "label")
"""What a simulated annotator does with a pair of equal utility: flip a coin (rlhf-gym 0.9's), or label it a tie."""


def check_tie_policy(policy: str) -> None:
    """A :class:`ConfigError` naming ``--annotator-ties`` unless ``policy`` is one of :data:`TIE_POLICIES`."""
    if policy not in TIE_POLICIES:
        raise ConfigError(f"--annotator-ties must be one of {', '.join(TIE_POLICIES)}, got {policy!r}")


class Labeler(Protocol):
    """Judges one pair. A labeler that draws random numbers also has ``seed_pair(pair_id)``, which the collector
    calls before each pair, so that a pair's judgement does not depend on the pairs judged before it (a resumed
    collection writes what an uninterrupted one would)."""

    name: str

    def __call__(self, prompt: str, response_a: str, response_b: str) -> Judgement: ...


class SimulatedAnnotator:
    """A noisy annotator who prefers by Bradley–Terry sampling on a gold reward, possibly biased.

    The annotator's utility is ``U(x, y) = G(x, y) + w * b(x, y)``: the gold reward plus ``bias_weight`` times a
    surface feature ``b`` it overrates (a task's documented bias: length, boilerplate, echoing the request).
    ``P(a > b) = sigmoid((U(x, a) - U(x, b)) / temperature)``; then, with probability ``flip_rate``, the
    label is flipped (a careless click). ``temperature -> 0``, ``flip_rate = 0`` and ``w = 0`` give a perfect judge.

    :param gold_reward: ``G(prompt, response) -> float``.
    :param temperature: Bradley–Terry temperature of the annotator's choices.
    :param flip_rate: probability of flipping the sampled label.
    :param seed: seed of the annotator's own random stream (per pair after :meth:`seed_pair`).
    :param bias: ``b(prompt, response) -> float``, the overrated feature (None: unbiased).
    :param bias_weight: ``w``, how much the annotator overrates it.
    :param label_ties: judge a pair of equal utility (equal gold and equal bias) ``"tie"`` instead of by a coin flip.
        Such a label carries nothing, for a reward model to fit as noise; a tie record stays in the data file and is
        left out of reward-model training (:func:`rlhf_gym.preferences.load_preferences`). Pairs of equal gold and
        unequal bias keep their (biased) preference: that is the task's designed hack.
    """

    def __init__(self, gold_reward: Callable[[str, str], float], temperature: float = 0.5, flip_rate: float = 0.1,
                 seed: int = 0, name: str = "simulated", bias: Callable[[str, str], float] | None = None,
                 bias_weight: float = 0.0, label_ties: bool = False):
        check_temperature(temperature, "temperature", sampling=False)
        if not 0.0 <= flip_rate <= 1.0:
            raise ConfigError(f"flip_rate must be in [0, 1], got {flip_rate}")
        if not math.isfinite(bias_weight) or (bias_weight and bias is None):
            raise ConfigError(f"bias_weight must be finite and needs a bias feature, got {bias_weight}")
        self.gold_reward, self.temperature, self.flip_rate = gold_reward, temperature, flip_rate
        self.bias, self.bias_weight, self.label_ties = bias, bias_weight, label_ties
        self.seed = seed
        self.rng = random.Random(seed)
        self.name = name

    def seed_pair(self, pair_id: int) -> None:
        """Judge the next pair from a random stream of its own, seeded by ``(seed, pair_id)``."""
        self.rng = random.Random(f"{self.seed}/{pair_id}")  # a str seed is hashed with SHA-512: stable across runs

    def utility(self, prompt: str, response: str) -> float:
        """``U(x, y) = G(x, y) + w * b(x, y)``."""
        value = self.gold_reward(prompt, response)
        return value + self.bias_weight * self.bias(prompt, response) if self.bias_weight else value

    def preference_probability(self, prompt: str, response_a: str, response_b: str) -> float:
        delta = (self.utility(prompt, response_a) - self.utility(prompt, response_b)) / self.temperature
        return 1.0 / (1.0 + math.exp(-max(min(delta, 50.0), -50.0)))

    def __call__(self, prompt: str, response_a: str, response_b: str) -> Judgement:
        if self.label_ties and abs(self.utility(prompt, response_a) - self.utility(prompt, response_b)) <= UTILITY_TIE:
            return "tie"
        prefers_a = self.rng.random() < self.preference_probability(prompt, response_a, response_b)
        if self.rng.random() < self.flip_rate:
            prefers_a = not prefers_a
        return "a" if prefers_a else "b"


class AnnotatorPool:
    """A pool of simulated annotators with different biases; each pair is judged by one member drawn at random.

    AlpacaFarm (Dubois et al. 2023, arXiv 2305.14387) found that simulated feedback reproduces reward-model
    over-optimisation only with annotator variability: a pool of annotators with different styles plus label
    noise, not a single noise-free judge. Member ``i`` judges by ``G + w_i * b`` (:class:`SimulatedAnnotator`).
    The member and its random stream are fixed by ``(seed, pair_id)``, so a resumed collection labels as an
    uninterrupted one would.

    :param gold_reward: ``G(prompt, response) -> float``.
    :param bias: ``b(prompt, response) -> float``, the feature the members overrate.
    :param bias_weights: one member per weight ``w_i``.
    :param temperature: Bradley–Terry temperature of every member.
    :param flip_rate: label-flip rate of every member.
    :param seed: seed of the draws of members and labels.
    :param label_ties: every member labels a pair of equal utility ``"tie"`` (see :class:`SimulatedAnnotator`).
    """

    def __init__(self, gold_reward: Callable[[str, str], float], bias: Callable[[str, str], float] | None,
                 bias_weights: Sequence[float], temperature: float = 0.5, flip_rate: float = 0.1, seed: int = 0,
                 name: str = "simulated-pool", label_ties: bool = False):
        if not bias_weights:
            raise ConfigError("an annotator pool needs at least one member (bias weight)")
        self.members = [SimulatedAnnotator(gold_reward, temperature, flip_rate, seed=seed, bias=bias, bias_weight=w,
                                           name=f"{name}/w={w:g}", label_ties=label_ties) for w in bias_weights]
        self.seed, self.name = seed, name
        self.current = self.members[0]

    def seed_pair(self, pair_id: int) -> None:
        """Draw the member who judges pair ``pair_id`` and seed its stream, both from ``(seed, pair_id)``."""
        self.current = self.members[random.Random(f"{self.seed}/{pair_id}/member").randrange(len(self.members))]
        self.current.seed_pair(pair_id)

    def preference_probability(self, prompt: str, response_a: str, response_b: str) -> float:
        """The pool's mean ``P(a > b)`` (before flips): what a reward model trained on its labels approaches."""
        return sum(m.preference_probability(prompt, response_a, response_b) for m in self.members) / len(self.members)

    def __call__(self, prompt: str, response_a: str, response_b: str) -> Judgement:
        return self.current(prompt, response_a, response_b)


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
