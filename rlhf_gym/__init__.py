"""rlhf-gym: reinforcement learning from human feedback as a library.

``import rlhf_gym`` registers the Gymnasium environment ids (``RLHF-v0``, ...) and imports nothing heavy: torch and
transformers load when a model, an env or one of the names below is first used (PEP 562), so the command line's
``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import importlib
from typing import Any

from .registration import register_envs

__version__ = "0.9.0"

_LAZY = {"PreferenceDataError": "preferences", "load_preferences": "preferences", "RewardModel": "reward_model",
         "bradley_terry_loss": "reward_model", "Task": "tasks", "load_task": "tasks"}
"""Public names -> the module of rlhf_gym that defines them, imported on first use."""

register_envs()

__all__ = ["PreferenceDataError", "RewardModel", "Task", "bradley_terry_loss", "load_preferences", "load_task"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
