"""The Stable-Baselines3 side of rlhf-gym: the transformer policy and token-level PPO."""

from .buffer import SequenceRolloutBuffer, compute_gae
from .policy import MaskableTransformerPolicy, TransformerPolicy
from .ppo import TokenPPO

__all__ = ["MaskableTransformerPolicy", "SequenceRolloutBuffer", "TokenPPO", "TransformerPolicy", "compute_gae"]
