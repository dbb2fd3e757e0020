"""The Stable-Baselines3 side of rlhf-gym: the VecEnv bridge, the transformer policy, token-level PPO and the
critic-free RLOO and GRPO on the same rollout."""

from .buffer import SequenceRolloutBuffer, SequenceSamples, compute_gae
from .policy import MaskableTransformerPolicy, TransformerPolicy
from .grpo import GRPO
from .ppo import TokenPPO
from .rloo import RLOO
from .vec_env import RLHFVecEnv, make_batched_env

__all__ = ["GRPO", "RLOO", "MaskableTransformerPolicy", "RLHFVecEnv", "SequenceRolloutBuffer", "SequenceSamples", "TokenPPO",
           "TransformerPolicy", "compute_gae", "make_batched_env"]
