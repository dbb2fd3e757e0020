"""The Stable-Baselines3 side of rlhf-gym: the VecEnv bridge, the transformer policy, token-level PPO and NLPO, the
critic-free RLOO, GRPO and online DPO on the same rollout, and the DPO family (DPO, IPO, cDPO, SimPO, KTO) on stored
preferences.

Every algorithm registers itself with :mod:`rlhf_gym.agents.registry` when its module is imported; ``rlhf-gym train
--algo <name>`` and the other commands find it there. The names below are imported on first use (PEP 562), so that
``import rlhf_gym.agents.registry`` or a command's ``--help`` does not load torch and SB3.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SequenceRolloutBuffer": "buffer", "SequenceSamples": "buffer", "compute_gae": "buffer",
    "MaskableTransformerPolicy": "policy", "TransformerPolicy": "policy",
    "ALGORITHMS": "registry", "AlgorithmTraits": "registry", "get_algorithm": "registry", "register_algorithm": "registry",
    "RLHFVecEnv": "vec_env", "make_batched_env": "vec_env",
    "TokenPPO": "ppo", "NLPO": "nlpo", "RLOO": "rloo", "GRPO": "grpo", "OfflinePreferenceOptimizer": "offline",
    "CDPO": "dpo", "DPO": "dpo", "IPO": "dpo", "dpo_loss": "dpo", "SimPO": "simpo", "simpo_loss": "simpo",
    "KTO": "kto", "kto_loss": "kto", "OnlineDPO": "online_dpo", "online_dpo_loss": "online_dpo",
}
"""Public names -> the module of this package that defines them."""

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
