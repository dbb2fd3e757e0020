"""Gymnasium environments of rlhf-gym: ``RLHF-v0`` (single) and its batched form, with their config.

No Stable-Baselines3 here: the SB3 ``VecEnv`` bridge is :class:`rlhf_gym.agents.RLHFVecEnv`. The names below are
imported on first use (PEP 562): ``rlhf_gym.envs.config``'s option names can be read without loading torch (a
command's ``--help``), and Gymnasium imports an env's module itself when ``gym.make`` builds one.
"""

from __future__ import annotations

import importlib
from typing import Any

from rlhf_gym.registration import register_envs

# The import above has already run rlhf_gym/__init__.py, which registers the ids; this call keeps importing the envs
# sufficient on its own, not reliant on that side effect, and costs nothing (ids already registered are skipped).
register_envs()

_LAZY = {"RLHFEnvConfig": "config", "RLHFEnv": "rlhf_env", "RLHFEnvSurface": "surface", "RLHFVectorEnv": "vector_env"}
"""Public names -> the module of this package that defines them."""

__all__ = ["RLHFEnv", "RLHFEnvConfig", "RLHFEnvSurface", "RLHFVectorEnv", "register_envs"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
