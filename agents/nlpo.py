"""NLPO: PPO over tokens restricted to the top-p mass of a periodically refreshed copy of the policy.

Ramamurthy et al. (2022), "Is Reinforcement Learning (Not) for Natural Language Processing?",
https://arxiv.org/abs/2210.01241. The env builds the masking policy (``mask_top_p``) and refreshes it from the
policy every ``mask_refresh_every`` rollouts; :class:`rlhf_gym.agents.TokenPPO` with ``use_action_masks=True`` samples
from, and computes the ratio and entropy of, the masked policy (see docs/nlpo.md). The KL reported to the env is the
unmasked policy's: the leash measures the policy itself against the reference, not the masked sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlhf_gym.errors import ConfigError

from .ppo import PPOConfig, TokenPPO
from .registry import AlgorithmTraits, register_algorithm


@dataclass
class NLPOConfig(PPOConfig):
    """NLPO's hyperparameters: PPO's and the masks'."""

    mask_top_p: float = 0.9
    """Keep the tokens in this top-p mass of the masking policy."""
    mask_refresh_every: int = 5
    """Copy the policy into the masking policy every this many rollouts."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # the masking module checks p too; checked here, the error names the command-line option before any env is built
        if not 0 < self.mask_top_p <= 1:
            raise ConfigError(f"--mask-top-p must be in (0, 1], got {self.mask_top_p}")
        if not self.mask_refresh_every >= 1:
            raise ConfigError(f"--mask-refresh-every must be >= 1, got {self.mask_refresh_every}")


@register_algorithm
class NLPO(TokenPPO):
    """:class:`rlhf_gym.agents.TokenPPO` with action masks on by default (the env needs ``mask_top_p``)."""

    traits = AlgorithmTraits("nlpo", "PPO with top-p action masks from a periodically refreshed copy of the policy "
                                     "(Ramamurthy et al. 2022)", online=True)
    Config = NLPOConfig

    # the whole algorithm is TokenPPO's masked path (the rollout and update in agents/ppo.py, the masks in the env):
    # NLPO only switches it on and routes its settings
    def __init__(self, policy, env, use_action_masks: bool = True, **kwargs):
        super().__init__(policy, env, use_action_masks=use_action_masks, **kwargs)

    @classmethod
    def env_settings(cls, config: NLPOConfig) -> dict[str, Any]:
        # mask_top_p goes to the env: the env owns the masking model and computes the masks at every step
        return {**super().env_settings(config), "mask_top_p": config.mask_top_p}

    @classmethod
    def algorithm_kwargs(cls, config: NLPOConfig) -> dict[str, Any]:
        # mask_refresh_every goes to the agent: only the agent has the policy to copy into the masking model
        return {**super().algorithm_kwargs(config), "mask_refresh_every": config.mask_refresh_every}
