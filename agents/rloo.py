"""RLOO: REINFORCE with a leave-one-out baseline over k responses per prompt.

Ahmadian et al. (2024), "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback
in LLMs", https://arxiv.org/abs/2402.14740 (after Kool et al. 2019). Each response's reward is the env's
``R_i = r_phi(x, y_i) - beta * KL_i`` (the KL is in the reward, as in the paper), and its advantage is its reward
minus the mean reward of the *other* responses to the same prompt::

    A_i = R_i - 1/(k-1) * sum_{j != i} R_j

The update treats a response as one action: the importance ratio is over the whole sequence,
``rho_i = exp(sum_t log pi(y_t) - log pi_old(y_t))``, clipped as in PPO (TRL's ``RLOOTrainer``); with one epoch
of one minibatch the ratio is 1 and the loss is plain REINFORCE, ``-A_i * log pi(y_i | x)``.
"""

from __future__ import annotations

import torch

from .buffer import SequenceRolloutBuffer, SequenceSamples
from .critic_free import CriticFreeConfig, CriticFreeTokenPG, group_view
from .registry import AlgorithmTraits, register_algorithm


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``A_i = R_i - mean_{j != i} R_j`` within each group of ``group_size`` consecutive responses [B]."""
    groups = group_view(rewards, group_size)
    # the baseline leaves the response's own reward out, so it does not depend on the response's own action and the
    # gradient estimate stays unbiased (a baseline that included R_i would shrink A_i by a factor (k - 1) / k)
    leave_one_out = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - leave_one_out).reshape(-1)


@register_algorithm
class RLOO(CriticFreeTokenPG):
    """RLOO on the batched RLHF env, on SB3's machinery (learn, callbacks, logger, save/load) like
    :class:`rlhf_gym.agents.TokenPPO`, whose rollout it shares.

    :param normalize_advantage: standardise the advantages over the rollout (TRL's ``normalize_advantages``).

    The other parameters are :class:`rlhf_gym.agents.critic_free.CriticFreeTokenPG`'s.
    """

    algorithm_name = "RLOO"
    traits = AlgorithmTraits("rloo", "REINFORCE with a leave-one-out baseline over k responses per prompt "
                                     "(Ahmadian et al. 2024)", online=True, group_sampling=True, kl="reward")
    Config = CriticFreeConfig

    def __init__(self, policy, env, normalize_advantage: bool = False, **kwargs):
        super().__init__(policy, env, **kwargs)
        self.standardize_advantages = normalize_advantage

    def sequence_rewards(self, rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> torch.Tensor:
        """The env's return of each response: ``r_phi - beta * KL`` (minus any no-EOS penalty), wherever it was paid."""
        # the sum over the tokens, so a per-token KL placement and a terminal one give the same scalar
        return rollout_buffer.rewards.sum(1)

    def group_advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        advantages = rloo_advantages(rewards, self.group_size)
        if self.standardize_advantages:  # over every process's responses
            everyone = self.parallel.gather(advantages)
            advantages = (advantages - everyone.mean()) / (everyone.std() + 1e-4)  # TRL's epsilon
        return advantages

    def policy_loss(self, batch: SequenceSamples, logprobs: torch.Tensor, clip_range: float):
        mask = batch.response_mask.float()
        # one ratio per response: the reward belongs to the whole sequence, so the sequence is the action (TRL's RLOO)
        log_ratio = ((logprobs - batch.old_logprobs) * mask).sum(1)
        ratio = torch.exp(log_ratio)
        advantages = batch.advantages[:, 0]  # the response's advantage (every token holds it; a response has >= 1 token)
        # a mean over the minibatch's responses: the processes' minibatches are of equal size (equal shares of equal
        # rollouts), so DDP's average of their gradients is the gradient of the global minibatch's mean
        loss = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages).mean()
        with torch.no_grad():
            stats = {"policy_gradient_loss": loss.item(),
                     "approx_kl": float((ratio - 1 - log_ratio).mean()),
                     "clip_fraction": float(((ratio - 1).abs() > clip_range).float().mean())}
        return loss, stats
