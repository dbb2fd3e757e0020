"""GRPO: group-normalised advantages, PPO's clipped token ratio and a k3 KL penalty in the loss.

Shao et al. (2024), "DeepSeekMath", https://arxiv.org/abs/2402.03300, section 4.1. The reward of a response is
the reward model's score alone, ``R_i = r_phi(x, y_i)`` (minus any no-EOS penalty; the env's ``beta * KL`` is not
used), normalised within its group of k responses to the same prompt::

    A_i = (R_i - mean_j R_j) / (std_j R_j + 1e-4)        (scale_rewards="group"; "batch": the rollout's std; "none")

Every token of response i gets ``A_i``. The loss per token is PPO's clipped surrogate with the per-token ratio
``rho_t = pi(y_t) / pi_old(y_t)`` plus ``beta * k3``, with the k3 estimator of ``KL(pi || pi_ref)`` (Schulman 2020)::

    k3_t = exp(log pi_ref(y_t) - log pi(y_t)) - (log pi_ref(y_t) - log pi(y_t)) - 1      (>= 0)

``log pi_ref`` comes from the env's own scoring pass (``info["ref_token_logprobs"]``), not a second reference
forward. Aggregation (``loss_type``): ``"dapo"`` (Yu et al. 2025, https://arxiv.org/abs/2503.14476; TRL's default,
no length bias) sums over tokens and divides by the number of response tokens in the whole rollout (over all processes), so the
``n_envs / batch_size`` minibatch steps of a rollout each take their share of one objective over the rollout, as TRL
does; ``"grpo"`` averages over each response's tokens, then over the minibatch's responses (the paper's formula).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlhf_gym.errors import ConfigError

from .buffer import SequenceRolloutBuffer, SequenceSamples, masked_mean
from .critic_free import CriticFreeConfig, CriticFreeTokenPG, group_view, store_reference_logprobs
from .critic_free_settings import GRPO_LOSS_TYPES as LOSS_TYPES
from .registry import AlgorithmTraits, register_algorithm

SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPOConfig(CriticFreeConfig):
    """GRPO's hyperparameters: the critic-free ones, with the KL as a term of the loss."""

    kl_coef: float = 0.04
    """Weight of the k3 KL term in the loss (Shao et al. 2024's beta; 0: no KL term)."""
    grpo_loss: str = "dapo"
    """Sum the token losses and divide by the rollout's number of response tokens (``dapo``, TRL's default) or average
    over each response's tokens, then responses (``grpo``, the paper's)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grpo_loss not in LOSS_TYPES:
            raise ConfigError(f"--grpo-loss must be one of {', '.join(LOSS_TYPES)}, got {self.grpo_loss!r}")


def grpo_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: str = "group") -> torch.Tensor:
    """``(R_i - mean of its group) / (std + 1e-4)`` [B], the std taken per group, over the batch or not at all."""
    groups = group_view(rewards, group_size)
    # the group mean is the baseline: the k responses share a prompt, so it removes how easy the prompt is
    centred = groups - groups.mean(1, keepdim=True)
    if scale_rewards == "group":
        # 1e-4 as TRL: a group of equal rewards has std 0, and its advantages stay 0 instead of 0/0. (torch's std is
        # the unbiased one, as TRL's)
        centred = centred / (groups.std(1, keepdim=True) + 1e-4)
    elif scale_rewards == "batch":
        # one scale for the rollout: a group with a small spread is not blown up to unit std (the difficulty bias that
        # Dr. GRPO points out, and avoids by not scaling at all: "none")
        centred = centred / (rewards.std() + 1e-4)
    return centred.reshape(-1)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of ``KL(pi || pi_ref)`` on samples of pi: ``e^d - d - 1`` with ``d = log pi_ref - log pi``."""
    # k3 rather than k1 (= -delta): e^d >= 1 + d, so every token's term is >= 0 and 0 exactly where pi = pi_ref, with a
    # lower variance; on samples of pi its mean is KL(pi || pi_ref), since E_pi[pi_ref / pi] = 1. The tokens here come
    # from pi_old, so it is unbiased only while pi = pi_old (a rollout's first step), as in the paper and TRL
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


@register_algorithm
class GRPO(CriticFreeTokenPG):
    """GRPO on the batched RLHF env, on SB3's machinery (learn, callbacks, logger, save/load) like
    :class:`rlhf_gym.agents.TokenPPO`, whose rollout it shares.

    :param beta: weight of the k3 KL term in the loss (0: no KL term).
    :param scale_rewards: ``"group"``, ``"batch"`` or ``"none"`` (Dr. GRPO), see the module docstring.
    :param loss_type: ``"dapo"`` or ``"grpo"``, see the module docstring.

    The other parameters are :class:`rlhf_gym.agents.critic_free.CriticFreeTokenPG`'s.
    """

    algorithm_name = "GRPO"
    traits = AlgorithmTraits("grpo", "group-normalised advantages, PPO's clipped ratio and a k3 KL term in the loss "
                                     "(Shao et al. 2024)", online=True, group_sampling=True, kl="loss")
    Config = GRPOConfig

    @classmethod
    def algorithm_kwargs(cls, config: GRPOConfig) -> dict[str, Any]:
        return {"beta": config.kl_coef, "loss_type": config.grpo_loss}

    def __init__(self, policy, env, beta: float = 0.04, scale_rewards: str = "group", loss_type: str = "dapo", **kwargs):
        if not beta >= 0:
            raise ConfigError(f"GRPO's beta must be >= 0, got {beta}")
        if scale_rewards not in SCALE_REWARDS:
            raise ConfigError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}, got {scale_rewards!r}")
        if loss_type not in LOSS_TYPES:
            raise ConfigError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
        # kl_coef: the loss's beta, kept apart from the env's reward beta (which GRPO leaves out of its rewards)
        self.kl_coef, self.scale_rewards, self.loss_type = float(beta), scale_rewards, loss_type
        super().__init__(policy, env, **kwargs)

    def coefficients(self) -> dict[str, float]:
        """The weight of the loss's KL term (the env's reward has none)."""
        return {"kl_coef": self.kl_coef}

    def sequence_rewards(self, rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> torch.Tensor:
        """The reward model's score minus any no-EOS penalty, from each response's final info; the reference's per-token
        log-probs of the same infos go into the buffer for the KL term."""
        store_reference_logprobs(rollout_buffer, episodes)
        rewards = torch.zeros(self.n_envs)
        for row, info in episodes.items():
            # from the final info, not the buffer's rewards: those hold the env's r - beta * KL, and GRPO's KL is in the loss
            rewards[row] = info["proxy_reward"] - info["penalty"]
        return rewards

    def group_advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        if self.scale_rewards != "batch":
            return grpo_advantages(rewards, self.group_size, self.scale_rewards)
        # the std of every process's rewards (a process holds whole groups, so its part of the result is its own)
        return self.parallel.own_part(grpo_advantages(self.parallel.gather(rewards), self.group_size, "batch"))

    def policy_loss(self, batch: SequenceSamples, logprobs: torch.Tensor, clip_range: float):
        mask = batch.response_mask.float()
        log_ratio = logprobs - batch.old_logprobs
        ratio = torch.exp(log_ratio)
        # a ratio per token, unlike RLOO's per sequence: the paper's objective is PPO's token-level surrogate
        surrogate = -torch.min(ratio * batch.advantages, torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * batch.advantages)
        kl = k3_kl(logprobs, batch.ref_logprobs)
        per_token = surrogate + self.kl_coef * kl
        if self.loss_type == "dapo":
            # DAPO: every token weighs the same, whatever its response's length. The normaliser is the whole rollout's
            # token count (over processes, per process: TokenPPO.minibatch_tokens), the same for every minibatch, so the
            # minibatch steps of a rollout are the shares of one objective, as TRL does
            loss = (per_token * mask).sum() / self.minibatch_tokens(self.rollout_buffer.response_mask).clamp(min=1)
        else:  # mean over each response's tokens, then over responses: a short response's tokens weigh more
            loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
        with torch.no_grad():  # the logged statistics are plain token means over this process's minibatch
            stats = {"policy_gradient_loss": masked_mean(surrogate, mask).item(), "kl": masked_mean(kl, mask).item(),
                     "approx_kl": masked_mean(ratio - 1 - log_ratio, mask).item(),
                     "clip_fraction": masked_mean(((ratio - 1).abs() > clip_range).float(), mask).item()}
        return loss, stats
