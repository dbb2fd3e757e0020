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
