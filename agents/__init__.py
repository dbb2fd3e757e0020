"""The Stable-Baselines3 side of rlhf-gym: the VecEnv bridge, the transformer policy and token-level PPO."""

from .buffer import SequenceRolloutBuffer, SequenceSamples, compute_gae
from .policy import MaskableTransformerPolicy, TransformerPolicy
from .ppo import TokenPPO
from .vec_env import RLHFVecEnv, make_batched_env

__all__ = ["MaskableTransformerPolicy", "RLHFVecEnv", "SequenceRolloutBuffer", "SequenceSamples", "TokenPPO",
           "TransformerPolicy", "compute_gae", "make_batched_env"]
