"""Gymnasium registration of the RLHF environment ids, by entry-point string (``rlhf_gym`` never imports ``envs``)."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from .ensemble import LazyRewardEnsemble

ENTRY_POINT = "envs.rlhf_env:RLHFEnv"
VECTOR_ENTRY_POINT = "envs.vector_env:RLHFVectorEnv"
ENV_IDS: dict[str, dict] = {
    "RLHF-v0": {},
    # the reviews task with the reward-model ensemble of artifacts_ensemble/ (rlhf-gym build-ensemble) as r_phi
    "RLHF-Reviews-Ensemble-v0": {"reward_model": LazyRewardEnsemble(objective="mean")},
    # the reviews task with half the response budget (12 tokens): cheaper episodes, more truncation
    "RLHF-Reviews-Short-v0": {"max_new_tokens": 12},
}
"""Registered ids and the keyword arguments each one fixes (the benchmark tasks of docs/benchmark_protocol.md)."""


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` once; ``import rlhf_gym`` (or ``import envs``) calls this."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT, kwargs=dict(kwargs))
