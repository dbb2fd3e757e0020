"""Action masks from a masking model: NLPO's top-p masks (Ramamurthy et al. 2022, "Is Reinforcement Learning
(Not) for Natural Language Processing?", https://arxiv.org/abs/2210.01241).

A token is allowed when it lies in the smallest set of most likely tokens whose probability under the
masking model reaches ``top_p`` (and, with ``top_k``, among the ``top_k`` most likely), with at least
``min_tokens`` allowed; ``always_allowed`` tokens (e.g. EOS) are never masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import ConfigError


def top_p_mask(
    logits: torch.Tensor,
    top_p: float = 0.9,
    top_k: int | None = None,
    min_tokens: int = 1,
    always_allowed: Sequence[int] = (),
) -> torch.Tensor:
    """Boolean mask [..., V] of the allowed tokens for next-token ``logits`` [..., V]."""
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    keep_sorted = mass_before < top_p
    ranks = torch.arange(logits.shape[-1], device=logits.device)
    keep_sorted |= ranks < min_tokens
    if top_k is not None:
        keep_sorted &= ranks < max(top_k, min_tokens)
    mask = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    if always_allowed:
        mask[..., list(always_allowed)] = True
    return mask


def apply_mask(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with masked-out tokens at a large negative value (probability 0 after softmax)."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask, torch.finfo(logits.dtype).min / 2)
