"""The metrics an RLHF episode reports, by name.

A finished episode's info dict carries :data:`EPISODE_METRICS` (``gold_reward`` and ``well_formed`` only when the
task has a gold reward); a held-out evaluation (:meth:`rlhf_gym.evaluation.Evaluation.summary`) also carries
:data:`EVALUATION_METRICS`.
"""

from __future__ import annotations

EPISODE_METRICS = ("proxy_reward", "gold_reward", "kl", "response_length", "well_formed")
"""Per-episode numbers that training logs (``rlhf/<key>``) and learning curves average over a rollout."""

EVALUATION_METRICS = (*EPISODE_METRICS, "distinct_2")
"""Means of a held-out evaluation that runs are summarised and compared on."""


def format_number(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals for a table, a negative zero printed as zero: ``-0.0`` and ``-0.0001`` give
    ``0.000``, not ``-0.000`` (a KL of zero measured as a tiny negative mean, say). Python 3.11's ``z`` format option
    does this; rlhf-gym supports Python 3.10."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text
