"""Gymnasium environments of rlhf-gym: ``RLHF-v0`` (single) and its batched form, with their config.

No Stable-Baselines3 here: the SB3 ``VecEnv`` bridge is :class:`rlhf_gym.agents.RLHFVecEnv`.
"""

from rlhf_gym.registration import register_envs

from .config import RLHFEnvConfig
from .rlhf_env import RLHFEnv
from .surface import RLHFEnvSurface
from .vector_env import RLHFVectorEnv

# The import above has already run rlhf_gym/__init__.py, which registers the ids; this call keeps importing the envs
# sufficient on its own, not reliant on that side effect, and costs nothing (ids already registered are skipped).
register_envs()

__all__ = ["RLHFEnv", "RLHFEnvConfig", "RLHFEnvSurface", "RLHFVectorEnv", "register_envs"]
