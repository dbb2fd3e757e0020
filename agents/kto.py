"""KTO: a causal LM trained on desirable and undesirable examples, one at a time, with a prospect-theoretic loss.

KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
https://arxiv.org/abs/2402.01306). With ``r(x, y) = log pi(y|x) - log pi_ref(y|x)`` (summed over the response tokens
and its EOS) and the reference point

    z0 = max(0, mean over the batch of log pi(y'|x) - log pi_ref(y'|x)),

taken on *mismatched* pairs ``(x, y')`` (the completion of an example with another prompt), detached, the loss of an
example is ``lambda_D * (1 - sigmoid(beta * (r - z0)))`` when it is desirable and
``lambda_U * (1 - sigmoid(beta * (z0 - r)))`` when not, averaged over the batch's examples. As TRL's ``KTOTrainer``:
z0 is the mean of the data-parallel processes' batch means, clamped at 0 after.

The data are unpaired examples ``{"prompt", "completion", "label": true|false}`` (TRL's unpaired format); comparisons
``{"prompt", "chosen", "rejected"}`` are split as TRL's ``unpair_preference_dataset`` does (chosen: desirable, rejected:
undesirable; :func:`rlhf_gym.preferences.unpair_preferences`). Each example's mismatched completion is fixed once, at
setup (:func:`mismatched_pairing`), so that the reference's log-probs of both are cached once, as DPO's are: an item
of :class:`rlhf_gym.agents.offline.OfflinePreferenceOptimizer` is ``(prompt, completion, mismatched completion)``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlhf_gym.checks import check_number, check_option
from rlhf_gym.errors import DataError
from rlhf_gym.preferences import unpair_preferences, validate_unpaired_record

from .offline import OfflinePreferenceOptimizer
from .registry import AlgorithmTraits, register_algorithm


def kto_reference_point(policy_mismatched_logps: torch.Tensor, ref_mismatched_logps: torch.Tensor,
                        gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """KTO's reference point ``z0 = max(0, mean(log pi(y'|x) - log pi_ref(y'|x)))`` over the batch's mismatched pairs,
    detached (a scalar tensor).

    :param gather: concatenates every data-parallel process's tensor (:meth:`rlhf_gym.agents.parallel.DataParallel.gather`):
        z0 is then the mean of the processes' means, as in TRL; None: this process alone.
    """
    kl = (policy_mismatched_logps - ref_mismatched_logps).mean().detach()
    if gather is not None:
        kl = gather(kl[None]).mean()
    return kl.clamp(min=0)


def kto_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, z0: torch.Tensor | float,
             beta: float = 1.0, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example KTO losses and implicit rewards ``beta * (log pi - log pi_ref)`` (detached), as in TRL.

    :param policy_logps: ``log pi(y|x)`` summed over the response tokens [B]; ``ref_logps`` likewise.
    :param desirable: True where the example is desirable [B].
    :param z0: the reference point (:func:`kto_reference_point`).
    :return: ``(losses, rewards)``, each [B].
    """
    logratios = policy_logps - ref_logps
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (logratios - z0))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z0 - logratios))))
    return losses, beta * logratios.detach()


def mismatched_pairing(prompts: Sequence[str], seed: int) -> list[int]:
    """A seeded pairing ``m`` of the examples with ``prompts[m[i]] != prompts[i]`` for every ``i`` (so a derangement):
    example ``i``'s mismatched completion is example ``m[i]``'s.

    The examples are shuffled and grouped by prompt (the groups in random order), and the one in place ``p`` is paired
    with the one in place ``(p + s) mod N``, for a random shift ``s`` in ``[M, N - M]``, ``M`` the largest group's size.
    A group's ``k <= M`` places then point past its own end without wrapping round into its start (``s + k - 1 < N``).
    Such a pairing exists only when no prompt has more than half of the examples (``M <= N / 2``).

    :raises DataError: when one prompt has more than half of the examples.
    """
    n = len(prompts)
    prompt, largest = Counter(prompts).most_common(1)[0]
    if 2 * largest > n:
        raise DataError(f"KTO pairs every example with the completion of an example with another prompt (its reference "
                        f"point's mismatched pairs): the prompt {prompt!r} has {largest} of the {n} examples, more than "
                        "half")
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    rank: dict[str, int] = {}  # prompt -> its group's place: first seen in the shuffled order
    for i in order:
        rank.setdefault(prompts[i], len(rank))
    order.sort(key=lambda i: rank[prompts[i]])  # stable: each group contiguous, shuffled within
    shift = rng.randint(largest, n - largest)
    pairing = [0] * n
    for place, i in enumerate(order):
        pairing[i] = order[(place + shift) % n]
    return pairing


def _example_key(example: dict) -> str:
    """What makes two examples the same: prompt, completion, label, labeller and pair id (as for comparisons)."""
    return json.dumps([example["prompt"], example["completion"], example["label"], example.get("labeler"),
                       example.get("pair_id")], default=str)


@dataclass
class KTOConfig:
    """KTO's hyperparameters for ``rlhf-gym train --algo kto``, with its defaults (each checked here, once).

    The budget (``--total-comparisons``) counts examples: a comparison gives two. Beta 1.0 was picked for one pass on
    ``RLHF-v0``'s comparisons (docs/algorithms.md): at DPO's 0.5 one seed of three drifted to ill-formed text.
    """

    learning_rate: float = 3e-4
    """AdamW learning rate."""
    batch_size: int = 64
    """Examples per optimizer step."""
    dpo_beta: float = 1.0
    """KTO's beta: the temperature of the implicit reward ``beta * (log pi - log pi_ref)``."""
    desirable_weight: float = 1.0
    """lambda_D, the weight of a desirable example's loss."""
    undesirable_weight: float = 1.0
    """lambda_U, the weight of an undesirable example's loss."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "dpo_beta", "desirable_weight", "undesirable_weight"):
            check_option(name, getattr(self, name), strict=True)


@register_algorithm
class KTO(OfflinePreferenceOptimizer):
    """KTO (Ethayarajh et al. 2024, https://arxiv.org/abs/2402.01306) of a causal LM on unpaired examples.

    :param examples: unpaired examples ``{"prompt", "completion", "label": bool}`` and/or comparisons (each split in a
        desirable and an undesirable example), as a list, a JSONL path or a ``datasets`` dataset (or its saved
        directory). Exact duplicates are left out; an empty completion is the EOS alone.
    :param beta: the temperature of the implicit reward.
    :param desirable_weight: lambda_D; ``undesirable_weight``: lambda_U.

    ``learn(total_comparisons)`` counts examples. The other parameters are
    :class:`rlhf_gym.agents.offline.OfflinePreferenceOptimizer`'s (``seed`` also fixes the mismatched pairs); the
    defaults are :class:`KTOConfig`'s.
    """

    traits = AlgorithmTraits("kto", "KTO: desirable and undesirable examples (comparisons split in two), a loss against "
                                    "a reference point (Ethayarajh et al. 2024)", online=False, kl="implicit")
    Config = KTOConfig
    item = "example"
    dataset_columns = ("prompt",)  # a dataset of unpaired examples or of comparisons: each row is checked
    check_record = staticmethod(validate_unpaired_record)

    def __init__(self, model, ref_model, tokenizer, examples, beta: float = KTOConfig.dpo_beta,
                 desirable_weight: float = KTOConfig.desirable_weight,
                 undesirable_weight: float = KTOConfig.undesirable_weight, learning_rate: float = KTOConfig.learning_rate,
                 batch_size: int = KTOConfig.batch_size, **kwargs: Any):
        super().__init__(model, ref_model, tokenizer, examples, learning_rate=learning_rate, batch_size=batch_size,
                         beta=beta, desirable_weight=desirable_weight, undesirable_weight=undesirable_weight, **kwargs)

    def _configure_loss(self, *, beta: float, desirable_weight: float, undesirable_weight: float) -> None:
        check_number("beta", beta, 0.0, strict=True)
        check_number("desirable_weight", desirable_weight, 0.0, strict=True)
        check_number("undesirable_weight", undesirable_weight, 0.0, strict=True)
        self.beta, self.desirable_weight, self.undesirable_weight = float(beta), float(desirable_weight), \
            float(undesirable_weight)

    def loss_hyperparameters(self) -> dict[str, Any]:
        return {"beta": self.beta, "desirable_weight": self.desirable_weight,
                "undesirable_weight": self.undesirable_weight}

    # ------------------------------------------------------------------------------------------------- data
    @classmethod
    def training_records(cls, records: list[dict], where: str) -> list[dict]:
        """The unpaired examples: comparisons split (ties and skips left out), then exact duplicates left out."""
        examples = unpair_preferences(records)
        unique: dict[str, dict] = {}
        for example in examples:
            unique.setdefault(_example_key(example), example)  # the first of equal ones
        if len(unique) < len(examples):
            print(f"[rlhf_gym] left out {len(examples) - len(unique)} duplicate example(s) (same prompt, completion, "
                  "label, labeler and pair_id as an earlier one)")
        return list(unique.values())

    def item_texts(self, records: list[dict]) -> list[tuple[str, str, str]]:
        """Each example's prompt, its completion, and the completion of another prompt (:func:`mismatched_pairing`)."""
        pairing = mismatched_pairing([r["prompt"] for r in records], self.seed)
        return [(r["prompt"], r["completion"], records[j]["completion"]) for r, j in zip(records, pairing)]

    def _set_data(self, data: Any) -> None:
        super()._set_data(data)
        self.desirable = torch.tensor([r["label"] for r in self.comparisons], device=self.device)

    def data_sha256(self) -> str:
        """SHA-256 of the examples (prompt, completion, label), in order."""
        digest = hashlib.sha256()
        for r in self.comparisons:
            digest.update(json.dumps([r["prompt"], r["completion"], r["label"]]).encode("utf-8"))
        return digest.hexdigest()

    # ------------------------------------------------------------------------------------------------- loss
    def batch_losses(self, logps: torch.Tensor, indices: list[int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """:func:`kto_loss` of the examples ``indices`` (``logps``: their completions' then their mismatched ones'), and
        TRL's statistics: ``rewards/chosen`` of the desirable examples, ``rewards/rejected`` of the others, ``kl`` (z0)."""
        ref = self.ref_logps[indices]
        z0 = kto_reference_point(logps[1], ref[:, 1], self.parallel.gather)
        desirable = self.desirable[indices]
        losses, rewards = kto_loss(logps[0], ref[:, 0], desirable, z0, self.beta, self.desirable_weight,
                                   self.undesirable_weight)
        return losses, {"rewards/chosen": rewards[desirable].tolist(), "rewards/rejected": rewards[~desirable].tolist(),
                        "kl": z0.item(), "logps/chosen": logps[0][desirable].tolist(),
                        "logps/rejected": logps[0][~desirable].tolist()}

    @classmethod
    def loss_kwargs(cls, config: KTOConfig) -> dict[str, Any]:
        return {"beta": config.dpo_beta, "desirable_weight": config.desirable_weight,
                "undesirable_weight": config.undesirable_weight}

    def coefficients(self) -> dict[str, float]:
        return {"dpo_beta": self.beta}


__all__ = ["KTO", "KTOConfig", "kto_loss", "kto_reference_point", "mismatched_pairing"]
