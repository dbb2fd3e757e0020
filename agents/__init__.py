"""The Stable-Baselines3 side of rlhf-gym: the transformer policy and token-level PPO."""

from .buffer import SequenceRolloutBuffer, compute_gae
from .policy import TransformerPolicy
from .ppo import TokenPPO

__all__ = ["SequenceRolloutBuffer", "TokenPPO", "TransformerPolicy", "compute_gae"]
