"""The Stable-Baselines3 side of rlhf-gym: the VecEnv bridge, the transformer policy, token-level PPO, the
critic-free RLOO and GRPO on the same rollout, and DPO on comparisons."""

from .buffer import SequenceRolloutBuffer, SequenceSamples, compute_gae
from .policy import MaskableTransformerPolicy, TransformerPolicy
from .dpo import DPO, dpo_loss
from .grpo import GRPO
from .ppo import TokenPPO
from .rloo import RLOO
from .vec_env import RLHFVecEnv, make_batched_env

__all__ = ["DPO", "GRPO", "RLOO", "MaskableTransformerPolicy", "RLHFVecEnv", "SequenceRolloutBuffer", "SequenceSamples",
           "TokenPPO", "TransformerPolicy", "compute_gae", "dpo_loss", "make_batched_env"]
