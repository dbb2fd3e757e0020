"""Gymnasium registration of the RLHF environment ids, by entry-point string (``import rlhf_gym`` never imports ``envs``,
nor torch: ``gym.make`` imports the env when it builds one)."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry, spec

from .lazy_ensemble import LazyRewardEnsemble
from .errors import ConfigError

ENTRY_POINT = "rlhf_gym.envs.rlhf_env:RLHFEnv"
VECTOR_ENTRY_POINT = "rlhf_gym.envs.vector_env:RLHFVectorEnv"
ENV_IDS: dict[str, dict] = {
    "RLHF-v0": {},
    # the reviews task with the reward-model ensemble of artifacts_ensemble/ (rlhf-gym build-ensemble) as r_phi
    "RLHF-Reviews-Ensemble-v0": {"reward_model": LazyRewardEnsemble(objective="mean")},
    # the reviews task with half the response budget (12 tokens): cheaper episodes, more truncation
    "RLHF-Reviews-Short-v0": {"max_new_tokens": 12},
    # the task suite (docs/benchmark_protocol.md): prompt-conditional tasks with a gold ceiling and a designed hack
    "RLHF-Lists-v0": {"task": "lists"},
    "RLHF-Facts-v0": {"task": "facts"},
    "RLHF-Describe-v0": {"task": "describe"},
    # v1 of a suite task: its v0 world and SFT policy, with a reward model that sees content (docs/task_suite.md, "v1")
    "RLHF-Lists-v1": {"task": "lists_v1"},
    "RLHF-Facts-v1": {"task": "facts_v1"},
    "RLHF-Describe-v1": {"task": "describe_v1"},
}
"""Registered ids and the keyword arguments each one fixes (the benchmark tasks of docs/benchmark_protocol.md)."""
SUITES: dict[str, tuple[str, ...]] = {
    "RLHF-Suite-v0": ("RLHF-v0", "RLHF-Lists-v0", "RLHF-Facts-v0", "RLHF-Describe-v0"),
    "RLHF-Suite-v1": ("RLHF-v0", "RLHF-Lists-v1", "RLHF-Facts-v1", "RLHF-Describe-v1"),
}
"""Versioned task suites: env ids scored together by ``rlhf-gym evaluate --suite`` and the leaderboard."""
DEFAULT_SUITE = "RLHF-Suite-v0"


def suite_env_ids(suite: str) -> tuple[str, ...]:
    """The env ids of ``suite``; :class:`ConfigError` naming the known suites otherwise."""
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; known suites: {', '.join(SUITES)}")
    return SUITES[suite]


def task_of(env_id: str) -> str:
    """The task id a registered env id runs (``reviews`` unless the id fixes another)."""
    task = spec(env_id).kwargs.get("task", "reviews")
    return task if isinstance(task, str) else task.name


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` once; ``import rlhf_gym`` (or ``import rlhf_gym.envs``) calls this."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT, kwargs=dict(kwargs))
