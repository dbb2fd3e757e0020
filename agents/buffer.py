"""A rollout buffer of whole responses, and per-token GAE over them.

One row per response: the left-padded query [B, P], the response tokens [B, T] with a mask that is 0
after EOS, and per token the sampling log-prob, the value and the reward. Generalised advantage
estimation (Schulman et al. 2016) runs backwards over each response::

    delta_t = r_t + gamma * V_{t+1} - V_t,     A_t = delta_t + gamma * lambda * A_{t+1}

with ``V`` and ``A`` zero after the last token (the episode ends there: at EOS, or at the response budget,
where the final reward is paid).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over the unmasked entries; masked entries become 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token advantages and returns [B, T]; positions where ``mask`` is 0 get 0."""
    mask = mask.float()
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = (delta + gamma * gae_lambda * next_advantage) * mask[:, t]
        advantages[:, t] = advantage
        next_value = values[:, t] * mask[:, t]
        next_advantage = advantage
    return advantages, (advantages + values) * mask


@dataclass
class SequenceBatch:
    queries: torch.Tensor
    query_mask: torch.Tensor
    responses: torch.Tensor
    response_mask: torch.Tensor
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    action_masks: torch.Tensor | None = None


class SequenceRolloutBuffer:
    """Holds one rollout of ``n_sequences`` responses of at most ``max_new_tokens`` tokens, on ``device``."""

    def __init__(self, n_sequences: int, max_new_tokens: int, device: torch.device, gamma: float = 1.0, gae_lambda: float = 0.95,
                 vocab_size: int | None = None):
        """``vocab_size`` set: also hold the action masks [B, T, V] of a masked (NLPO) rollout."""
        self.n_sequences, self.max_new_tokens, self.device = n_sequences, max_new_tokens, device
        self.gamma, self.gae_lambda, self.vocab_size = gamma, gae_lambda, vocab_size
        self.reset()

    def reset(self) -> None:
        shape = (self.n_sequences, self.max_new_tokens)
        self.queries = self.query_mask = None
        self.responses = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.response_mask = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.logprobs = torch.zeros(shape, device=self.device)
        self.values = torch.zeros(shape, device=self.device)
        self.rewards = torch.zeros(shape, device=self.device)
        self.action_masks = None if self.vocab_size is None else torch.ones(shape + (self.vocab_size,), dtype=torch.bool, device=self.device)
        self.advantages = self.returns = None

    def compute_returns_and_advantage(self) -> None:
        self.advantages, self.returns = compute_gae(self.rewards, self.values, self.response_mask, self.gamma, self.gae_lambda)

    def get(self, batch_size: int, generator: torch.Generator | None = None, normalize_advantage: bool = True) -> Iterator[SequenceBatch]:
        """Minibatches of ``batch_size`` whole sequences in random order (advantages whitened per rollout)."""
        advantages = masked_whiten(self.advantages, self.response_mask.float()) if normalize_advantage else self.advantages
        order = torch.randperm(self.n_sequences, generator=generator).to(self.device)
        for start in range(0, self.n_sequences, batch_size):
            idx = order[start:start + batch_size]
            used = int(self.response_mask[idx].sum(0).nonzero().max()) + 1 if self.response_mask[idx].any() else 1
            yield SequenceBatch(self.queries[idx], self.query_mask[idx], self.responses[idx, :used],
                                self.response_mask[idx, :used], self.logprobs[idx, :used], self.values[idx, :used],
                                advantages[idx, :used], self.returns[idx, :used],
                                None if self.action_masks is None else self.action_masks[idx, :used])
