"""The RLHF environment's configuration: one documented dataclass, checked when it is built.

Both :class:`rlhf_gym.envs.RLHFEnv` and :class:`rlhf_gym.envs.RLHFVectorEnv` take an :class:`RLHFEnvConfig` (or its fields as
keyword arguments, which is what ``gym.make("RLHF-v0", beta=0.1)`` passes). Cheap checks of single values
run in ``__post_init__``; checks that need the loaded models (vocabulary, context length, prompt lengths)
run in :mod:`rlhf_gym.envs.setup`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rlhf_gym.checks import check_count, check_number, is_number
from rlhf_gym.errors import ConfigError
from rlhf_gym.kl import KL_ESTIMATORS

# The allowed values of the string-valued fields, checked in __post_init__ so that a typo fails when the config is
# built: the env compares against these strings, and an unknown one would silently take a branch (a misspelt
# kl_placement would pay no KL at all, a misspelt mask_model would mask with the frozen reference).
KL_PLACEMENTS = ("terminal", "per_token")
MASK_MODELS = ("policy_copy", "reference")
DEFAULT_BETA = 0.1
"""The KL coefficient of ``RLHF-v0`` and of ``scripts/train_agent.py`` (the one source of this default)."""

DEPRECATED_NAMES = {"target_kl": "kl_target", "kl_penalty": "kl_placement"}
"""Old keyword -> new field. ``target_kl`` clashed with SB3's early-stop ``target_kl``; ``kl_penalty`` is a placement."""


@dataclass
class RLHFEnvConfig:
    """Everything that defines an RLHF environment. Models may be given as HF ids, paths or objects."""

    task: Any = "reviews"
    """Task id or :class:`rlhf_gym.Task` (default: the embedded reviews task); ``None`` to give every model explicitly."""
    ref_model: Any = None
    """The frozen reference policy ``pi_ref``: HF causal-LM id, directory or model object (default: the task's SFT)."""
    tokenizer: Any = None
    """The policy's tokenizer (default: the reference model's, or the task's)."""
    reward_model: Any = None
    """``r_phi``: HF id/directory of a sequence classifier, :class:`rlhf_gym.RewardModel`, or ``f(prompts, responses)
    -> scores`` (default: the task's reward model)."""
    prompts: Any = None
    """Prompts: a list of strings, a ``.jsonl`` (field ``prompt``) or ``.txt`` file, or a dataset (default: the task's
    train split)."""
    max_new_tokens: int | None = None
    """Response budget in tokens; an episode is truncated after it (default: the task's, 24 for reviews)."""
    max_prompt_tokens: int | None = None
    """Prompt budget in tokens (default: the longest prompt)."""
    truncate_prompts: bool = False
    """Left-truncate prompts longer than ``max_prompt_tokens`` with a warning instead of raising."""
    beta: float = DEFAULT_BETA
    """KL coefficient of the reward ``r_phi - beta * KL`` (the initial value when ``kl_target`` is set)."""
    kl_target: float | None = None
    """Turns on the adaptive KL controller of Ziegler et al. (2019), which moves beta so that the KL per response
    approaches this target. (Formerly ``target_kl``.)"""
    kl_horizon: int = 10000
    """Horizon, in episodes, of the adaptive KL controller."""
    kl_placement: str = "terminal"
    """Where the KL penalty is paid: ``"terminal"`` (all at the last token) or ``"per_token"`` (dense rewards,
    the same sum). (Formerly ``kl_penalty``.)"""
    kl_estimator: str = "k1"
    """Per-token KL estimator: ``"k1"`` (log-ratio) or ``"k3"`` (Schulman's non-negative estimator)."""
    stop_token: str | int | None = None
    """Token (string or id) that ends an episode (default: the tokenizer's EOS)."""
    no_eos_penalty: float = 0.0
    """Subtracted from the reward of a response that never emits the stop token (TRL's "EOS trick")."""
    temperature: float = 1.0
    """Temperature of the reference log-probs; match the agent's sampling temperature."""
    device: Any = "cpu"
    """``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``: where the reference and reward model run."""
    mask_top_p: float | None = None
    """NLPO action masks (``action_masks()``): keep the tokens in this top-p mass of the masking model."""
    mask_top_k: int | None = None
    """NLPO: also keep at most this many tokens."""
    mask_min_tokens: int = 1
    """NLPO: keep at least this many tokens."""
    mask_model: str = "policy_copy"
    """NLPO masking model: ``"policy_copy"`` (a copy of the reference that the agent refreshes with its policy's
    weights) or ``"reference"`` (the frozen reference)."""

    def __post_init__(self) -> None:
        # Only checks of single values belong here: anything that needs the tokenizer or a model (vocabulary,
        # context length, prompt lengths, the stop token) is checked in envs/setup.py once those are loaded.
        if self.kl_placement not in KL_PLACEMENTS:
            raise ConfigError(f"kl_placement must be one of {KL_PLACEMENTS}, got {self.kl_placement!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
        if self.mask_model not in MASK_MODELS:
            raise ConfigError(f"mask_model must be one of {MASK_MODELS}, got {self.mask_model!r}")
        # NaN or inf would make every reward NaN or inf: each number must be finite, and within its range
        check_number("temperature", self.temperature, minimum=0, strict=True)
        check_number("beta", self.beta, minimum=0)
        if self.kl_target is not None:
            check_number("kl_target", self.kl_target, minimum=0, strict=True)
        check_number("no_eos_penalty", self.no_eos_penalty)
        # counts must be true integers >= 1 (check_count refuses a bool or 2.5): they size budgets and arrays,
        # and kl_horizon divides; None means "the default"
        for name in ("max_new_tokens", "max_prompt_tokens", "mask_top_k", "kl_horizon", "mask_min_tokens"):
            if getattr(self, name) is not None:
                check_count(name, getattr(self, name))
        # checked here because 0 would not fail later: build_mask reads `mask_top_p or 1.0`, so 0 would silently
        # become "keep every token"; above 1 is no probability mass
        if self.mask_top_p is not None and not (is_number(self.mask_top_p) and 0 < self.mask_top_p <= 1):
            raise ConfigError(f"mask_top_p must be in (0, 1], got {self.mask_top_p}")
        # load_prompts takes a str or a Path alike; keeping the str means the config holds one form of a file path
        if isinstance(self.prompts, Path):
            self.prompts = str(self.prompts)

    @property
    def uses_action_masks(self) -> bool:
        # either bound alone turns NLPO masks on (setup.build_mask uses top_p = 1.0 when only top_k is given);
        # mask_min_tokens and mask_model only shape masks that are on, so they do not count
        return self.mask_top_p is not None or self.mask_top_k is not None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RLHFEnvConfig:
        """Build from keyword arguments, accepting the deprecated names (with a ``FutureWarning``); an unknown
        keyword is a :class:`rlhf_gym.errors.ConfigError` that lists the known ones."""
        for old, new in DEPRECATED_NAMES.items():
            if old in kwargs:
                # both names at once may disagree, and silently preferring one would hide the other: refuse
                if new in kwargs:
                    raise ConfigError(f"give {new!r} only (the deprecated {old!r} is the same setting)")
                # FutureWarning, not DeprecationWarning: Python shows it by default, and it is the user's own call
                # (their keyword) that has to change
                warnings.warn(f"the env argument {old!r} is deprecated; use {new!r}", FutureWarning, stacklevel=3)
                kwargs[new] = kwargs.pop(old)
        # an unknown keyword is refused, not ignored: gym.make passes every keyword here, so a misspelt one
        # (e.g. "beta_" or "kl_targt") would otherwise run an experiment with the default silently
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown env argument(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)
