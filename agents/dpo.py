"""Direct preference optimisation: the policy trained on comparisons with one supervised loss, no reward model, no RL.

DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290). With the implicit reward
``r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))`` and, for a comparison ``(x, y_w, y_l)``,

    h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)),

the losses per comparison are (TRL's ``loss_type`` names):

* ``"sigmoid"`` (DPO): ``-log sigmoid(beta * h)``; with label smoothing ``eps`` (conservative DPO, labels flipped
  with probability ``eps``): ``-(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``;
* ``"ipo"`` (IPO, Azar et al. 2023, https://arxiv.org/abs/2310.12036): ``(h - 1 / (2 * beta))^2``.

``log pi(y|x)`` is the *sum* of the response's token log-probs, for both losses, as in both papers (TRL averages
them over the tokens for IPO; with sums, IPO's target gap ``1 / (2 beta)`` is in nats per response).

Three registered algorithms, thin subclasses of :class:`rlhf_gym.agents.offline.OfflinePreferenceOptimizer` (which holds
the data, the cached reference log-probs, the learn loop, save/load and export): ``dpo`` (:class:`DPO`), ``ipo``
(:class:`IPO`) and ``cdpo`` (:class:`CDPO`, DPO with label smoothing).
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rlhf_gym.checks import check_number, check_option
from rlhf_gym.errors import ConfigError

from .offline import OfflinePreferenceOptimizer, sequence_logps, tokenize_response
from .registry import AlgorithmTraits, register_algorithm

LOSS_TYPES = ("sigmoid", "ipo")


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-comparison DPO/IPO losses and implicit rewards ``beta * (log pi - log pi_ref)`` (detached), as in TRL.

    :param policy_chosen_logps: ``log pi(y_w|x)`` summed over the response tokens [B]; likewise the other three.
    :param loss_type: ``"sigmoid"`` (DPO, with ``label_smoothing``) or ``"ipo"``.
    :return: ``(losses, chosen_rewards, rejected_rewards)``, each [B].
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ConfigError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


@dataclass
class DPOConfig:
    """DPO's hyperparameters for ``rlhf-gym train --algo dpo``, with its defaults (each checked here, once).

    The defaults were tuned for one epoch on ``RLHF-v0``'s comparisons (its small SFT policy); TRL's (beta 0.1,
    learning rate 1e-6) suit billion-parameter models. On ``RLHF-v0``, beta 0.1 at 3e-4 drifts to ill-formed text (KL
    6.5, gold reward below the SFT policy's).
    """

    learning_rate: float = 3e-4
    """AdamW learning rate."""
    batch_size: int = 64
    """Comparisons per optimizer step."""
    dpo_beta: float = 0.5
    """Temperature of the implicit reward ``beta * (log pi - log pi_ref)`` (IPO's tau)."""
    label_smoothing: float = 0.0
    """Conservative DPO's label-flip probability, in [0, 0.5)."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "dpo_beta"):
            check_option(name, getattr(self, name), strict=True)
        check_option("label_smoothing", self.label_smoothing)
        if self.label_smoothing >= 0.5:
            raise ConfigError(f"--label-smoothing must be < 0.5 (a flip probability of 0.5 or more inverts the labels), "
                              f"got {self.label_smoothing}")


@dataclass
class IPOConfig(DPOConfig):
    """IPO's hyperparameters: DPO's, without label smoothing."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_smoothing:
            raise ConfigError("--label-smoothing applies to dpo and cdpo only (IPO has no label smoothing)")


@dataclass
class CDPOConfig(DPOConfig):
    """Conservative DPO's hyperparameters: DPO's, with labels flipped with probability 0.1 by default."""

    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.label_smoothing > 0:
            raise ConfigError("cdpo needs --label-smoothing > 0 (at 0 it is dpo)")


@register_algorithm
class DPO(OfflinePreferenceOptimizer):
    """Direct preference optimisation (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) of a causal LM.

    :param beta: temperature of the implicit reward (DPO's beta; IPO's tau).
    :param loss_type: ``"sigmoid"`` (DPO) or ``"ipo"`` (IPO).
    :param label_smoothing: conservative DPO's label-flip probability, in [0, 0.5) (``"sigmoid"`` only).

    The other parameters are :class:`rlhf_gym.agents.offline.OfflinePreferenceOptimizer`'s; the defaults (beta 0.5,
    learning rate 3e-4, batch 64) are :class:`DPOConfig`'s.
    """

    traits = AlgorithmTraits("dpo", "direct preference optimisation on comparisons, no reward model, no sampling "
                                    "(Rafailov et al. 2023)", online=False, kl="implicit")
    Config = DPOConfig

    def __init__(self, model, ref_model, tokenizer, comparisons, beta: float = DPOConfig.dpo_beta,
                 loss_type: str = "sigmoid", label_smoothing: float = DPOConfig.label_smoothing,
                 learning_rate: float = DPOConfig.learning_rate, batch_size: int = DPOConfig.batch_size, **kwargs: Any):
        super().__init__(model, ref_model, tokenizer, comparisons, learning_rate=learning_rate, batch_size=batch_size,
                         beta=beta, loss_type=loss_type, label_smoothing=label_smoothing, **kwargs)

    def _configure_loss(self, *, beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0) -> None:
        check_number("beta", beta, 0.0, strict=True)
        if loss_type not in LOSS_TYPES:
            raise ConfigError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        check_number("label_smoothing", label_smoothing, 0.0)
        if label_smoothing >= 0.5:
            raise ConfigError(f"label_smoothing must be < 0.5 (a flip probability of 0.5 or more inverts the labels), "
                              f"got {label_smoothing}")
        if loss_type == "ipo" and label_smoothing > 0:
            raise ConfigError("label_smoothing applies to loss_type='sigmoid' only (IPO has no label smoothing)")
        self.beta, self.loss_type, self.label_smoothing = float(beta), loss_type, float(label_smoothing)

    def loss_hyperparameters(self) -> dict[str, Any]:
        return {"beta": self.beta, "loss_type": self.loss_type, "label_smoothing": self.label_smoothing}

    def pair_losses(self, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps):
        return dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, self.beta,
                        self.loss_type, self.label_smoothing)

    @classmethod
    def loss_kwargs(cls, config: DPOConfig) -> dict[str, Any]:
        return {"beta": config.dpo_beta, "label_smoothing": config.label_smoothing}

    def coefficients(self) -> dict[str, float]:
        return {"dpo_beta": self.beta}


@register_algorithm
class IPO(DPO):
    """IPO (Azar et al. 2023, https://arxiv.org/abs/2310.12036): the squared loss ``(h - 1 / (2 tau))^2`` of
    :func:`dpo_loss`, with ``beta`` as tau."""

    traits = AlgorithmTraits("ipo", "identity preference optimisation: DPO's data with a squared loss towards a margin "
                                    "(Azar et al. 2023)", online=False, kl="implicit")
    Config = IPOConfig

    def __init__(self, model, ref_model, tokenizer, comparisons, beta: float = IPOConfig.dpo_beta, **kwargs: Any):
        super().__init__(model, ref_model, tokenizer, comparisons, beta=beta, loss_type="ipo", **kwargs)

    @classmethod
    def loss_kwargs(cls, config: IPOConfig) -> dict[str, Any]:
        return {"beta": config.dpo_beta}


@register_algorithm
class CDPO(DPO):
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): DPO whose labels are taken as flipped
    with probability ``label_smoothing`` (0.1 by default)."""

    traits = AlgorithmTraits("cdpo", "conservative DPO: labels flipped with a known probability (label smoothing)",
                             online=False, kl="implicit")
    Config = CDPOConfig

    def __init__(self, model, ref_model, tokenizer, comparisons, label_smoothing: float = CDPOConfig.label_smoothing,
                 **kwargs: Any):
        super().__init__(model, ref_model, tokenizer, comparisons, label_smoothing=label_smoothing, **kwargs)


__all__ = ["CDPO", "DPO", "IPO", "dpo_loss", "sequence_logps", "tokenize_response"]
