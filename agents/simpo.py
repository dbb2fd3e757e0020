"""SimPO: preference optimisation with a length-normalised, reference-free implicit reward.

SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
https://arxiv.org/abs/2405.14734). The implicit reward of a response is its average log-prob,
``r(x, y) = beta * log pi(y|x) / |y|``, and the loss of a comparison ``(x, y_w, y_l)`` asks for a margin ``gamma``:

    -log sigmoid(beta * log pi(y_w|x) / |y_w| - beta * log pi(y_l|x) / |y_l| - gamma)

``|y|`` counts the response's tokens with the EOS that ended it: the tokens whose log-probs are summed
(:func:`rlhf_gym.agents.offline.tokenize_response`). This is TRL 0.29.1's ``CPOTrainer(loss_type="simpo",
cpo_alpha=0)``, whose logits are ``pi_logratios - simpo_gamma / beta`` of average log-probs. There is no reference
model: none is run, cached or saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rlhf_gym.checks import check_number, check_option

from .offline import OfflinePreferenceOptimizer
from .registry import AlgorithmTraits, register_algorithm


def simpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, chosen_lengths: torch.Tensor,
               rejected_lengths: torch.Tensor, beta: float = 2.0, gamma: float = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-comparison SimPO losses and implicit rewards ``beta * log pi(y|x) / |y|`` (detached), as in TRL.

    :param policy_chosen_logps: ``log pi(y_w|x)`` summed over the response tokens [B]; likewise the rejected ones.
    :param chosen_lengths: ``|y_w|``, the tokens summed over (EOS included) [B]; likewise the rejected ones.
    :param gamma: the target reward margin.
    :return: ``(losses, chosen_rewards, rejected_rewards)``, each [B].
    """
    chosen_rewards = beta * policy_chosen_logps / chosen_lengths
    rejected_rewards = beta * policy_rejected_logps / rejected_lengths
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


@dataclass
class SimPOConfig:
    """SimPO's hyperparameters for ``rlhf-gym train --algo simpo``, with its defaults (each checked here, once).

    Beta 2.0 and gamma 1.0 are the paper's (beta 2.0-2.5, gamma / beta about 0.5, on 7B models). The learning rate was
    picked for one pass on ``RLHF-v0``'s comparisons (docs/algorithms.md): at DPO's 3e-4 this reference-free loss drifted
    to KL 15.8 on one seed of three; at 2e-4 all three stayed under KL 4.
    """

    learning_rate: float = 2e-4
    """AdamW learning rate."""
    batch_size: int = 64
    """Comparisons per optimizer step."""
    dpo_beta: float = 2.0
    """SimPO's beta: the scale of the implicit reward ``beta * log pi(y|x) / |y|``."""
    simpo_gamma: float = 1.0
    """The target reward margin gamma, >= 0."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "dpo_beta"):
            check_option(name, getattr(self, name), strict=True)
        check_option("simpo_gamma", self.simpo_gamma)


@register_algorithm
class SimPO(OfflinePreferenceOptimizer):
    """SimPO (Meng et al. 2024, https://arxiv.org/abs/2405.14734) of a causal LM: :func:`simpo_loss` on comparisons.

    :param ref_model: not read (SimPO is reference-free); the argument keeps the family's signature.
    :param beta: the scale of the implicit reward ``beta * log pi(y|x) / |y|``.
    :param gamma: the target reward margin, >= 0.

    The other parameters are :class:`rlhf_gym.agents.offline.OfflinePreferenceOptimizer`'s; the defaults are
    :class:`SimPOConfig`'s.
    """

    traits = AlgorithmTraits("simpo", "SimPO: comparisons with a length-normalised reward and a target margin, no "
                                      "reference (Meng et al. 2024)", online=False, kl="implicit")
    Config = SimPOConfig
    uses_reference = False

    def __init__(self, model, ref_model, tokenizer, comparisons, beta: float = SimPOConfig.dpo_beta,
                 gamma: float = SimPOConfig.simpo_gamma, learning_rate: float = SimPOConfig.learning_rate,
                 batch_size: int = SimPOConfig.batch_size, **kwargs: Any):
        super().__init__(model, ref_model, tokenizer, comparisons, learning_rate=learning_rate, batch_size=batch_size,
                         beta=beta, gamma=gamma, **kwargs)

    def _configure_loss(self, *, beta: float, gamma: float) -> None:
        check_number("beta", beta, 0.0, strict=True)
        check_number("gamma", gamma, 0.0)
        self.beta, self.gamma = float(beta), float(gamma)

    def loss_hyperparameters(self) -> dict[str, Any]:
        return {"beta": self.beta, "gamma": self.gamma}

    def pair_inputs(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The responses' token counts (EOS included), chosen then rejected."""
        lengths = self.response_lengths[indices]
        return lengths[:, 0], lengths[:, 1]

    def pair_losses(self, policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths):
        return simpo_loss(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, self.beta,
                          self.gamma)

    @classmethod
    def loss_kwargs(cls, config: SimPOConfig) -> dict[str, Any]:
        return {"beta": config.dpo_beta, "gamma": config.simpo_gamma}

    def coefficients(self) -> dict[str, float]:
        return {"dpo_beta": self.beta, "simpo_gamma": self.gamma}


__all__ = ["SimPO", "SimPOConfig", "simpo_loss"]
