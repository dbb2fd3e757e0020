"""The option values of the critic-free algorithms (RLOO, GRPO), readable without importing torch: ``rlhf-gym train
--help`` and ``rlhf-gym benchmark --help`` show them; :mod:`rlhf_gym.agents.critic_free` and
:mod:`rlhf_gym.agents.grpo` train with them."""

from __future__ import annotations

DEFAULT_GROUP_SIZE = 4
"""Responses per prompt when the env is given by id (Ahmadian et al. 2024 report k = 2 and 4)."""
GRPO_LOSS_TYPES = ("dapo", "grpo")
"""GRPO's aggregations of the token losses (``--grpo-loss``; :mod:`rlhf_gym.agents.grpo` describes them)."""
