"""Gymnasium environments of rlhf-gym: ``RLHF-v0`` (single) and its batched form, plus the SB3 bridge."""

from rlhf_gym.registration import register_envs

from .rlhf_env import RLHFEnv
from .sb3_vec_env import RLHFVecEnv
from .vector_env import RLHFVectorEnv

register_envs()

__all__ = ["RLHFEnv", "RLHFVecEnv", "RLHFVectorEnv", "register_envs"]
