"""Gymnasium registration of the RLHF environment ids, by entry-point string (``rlhf_gym`` never imports ``envs``)."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENTRY_POINT = "envs.rlhf_env:RLHFEnv"
VECTOR_ENTRY_POINT = "envs.vector_env:RLHFVectorEnv"
ENV_IDS: dict[str, dict] = {"RLHF-v0": {}}
"""Registered ids and the keyword arguments each one fixes."""


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` once; ``import rlhf_gym`` (or ``import envs``) calls this."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT, kwargs=dict(kwargs))
