"""A rollout buffer of whole responses, and per-token GAE over them.

One row per response (SB3's ``n_envs`` axis: the env's rows), one column per response token (SB3's
``buffer_size`` axis: the response budget ``n_steps``). The rollout fills it one token step at a time with
:meth:`SequenceRolloutBuffer.add`. Generalised advantage estimation (Schulman et al. 2016) runs backwards
over each response::

    delta_t = r_t + gamma * V_{t+1} - V_t,     A_t = delta_t + gamma * lambda * A_{t+1}

with ``V`` and ``A`` zero after the last token (the episode ends there: at EOS, or at the response budget,
where the final reward is paid).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer


def masked_mean(x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | None = None) -> torch.Tensor:
    """``sum(x * mask) / count``, the mean over the unmasked entries (``count``: their number, ``mask.sum()``)."""
    # clamp: a minibatch without a live token (or a zero normaliser) gives 0, not NaN. The token-level losses pass
    # ``count`` so that every minibatch, and every process, divides by the same global number (TokenPPO.minibatch_tokens)
    return (x * mask).sum() / (mask.sum() if count is None else count).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8,
                  total: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``(x - mean) / std`` over the unmasked entries; masked entries become 0.

    ``total`` turns a local sum into the sum over all processes of a data-parallel run, so the mean and the variance
    are those of every process's entries together (None: this tensor's alone).
    """
    total = total or (lambda value: value)
    # statistics over the response tokens only: the padding after a response holds 0s, which would pull the mean to 0
    # and shrink the variance by however much padding the rollout happens to have. Three sums (count, sum, squared
    # deviations) are all a data-parallel run must reduce to get the global mean and (population) variance
    count = total(mask.sum())
    mean = total((x * mask).sum()) / count.clamp(min=1)
    var = total(((x - mean) ** 2 * mask).sum()) / count.clamp(min=1)
    # eps keeps a rollout of equal advantages finite; the final mask keeps the padding at exactly 0
    return (x - mean) * torch.rsqrt(var + eps) * mask


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token advantages and returns [B, T]; positions where ``mask`` is 0 get 0."""
    # Responses are right-padded: response i fills columns 0 .. L_i - 1 and its padding follows, so one backward sweep
    # over the columns serves every row, and the mask both zeroes the padding and ends each episode at its own L_i - 1
    mask = mask.float()
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])  # V_{t+1}: 0 past the last token of every response
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # a reward in a padding column is dropped here: late rewards must be put on the last live token
        # (SequenceRolloutBuffer.add_late_rewards)
        advantage = (delta + gamma * gae_lambda * next_advantage) * mask[:, t]
        advantages[:, t] = advantage
        # a dead position (mask 0) passes V = 0 and A = 0 back to the live token before it: the episode ended there
        next_value = values[:, t] * mask[:, t]
        next_advantage = advantage
    # the value targets are the lambda-returns A + V (as SB3's RolloutBuffer), 0 on the padding
    return advantages, (advantages + values) * mask


class SequenceSamples(NamedTuple):
    """A minibatch of whole responses, the token axis cut to the longest live response in it.

    Shapes: ``queries``/``query_mask`` [B, P] (left-padded prompts); every other field [B, T];
    ``action_masks`` [B, T, V] for a masked (NLPO) rollout, else None; ``ref_logprobs`` [B, T], the reference's
    log-probs of the tokens, when the rollout stored them (GRPO), else None.
    """

    queries: torch.Tensor
    query_mask: torch.Tensor
    responses: torch.Tensor
    response_mask: torch.Tensor
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    action_masks: torch.Tensor | None
    ref_logprobs: torch.Tensor | None = None


class SequenceRolloutBuffer(BaseBuffer):
    """One rollout of ``n_envs`` responses of at most ``buffer_size`` tokens, kept as tensors on ``device``.

    Built by SB3's ``OnPolicyAlgorithm._setup_model`` (``rollout_buffer_class``), with the same arguments as
    SB3's ``RolloutBuffer``.

    :param buffer_size: the response budget (``n_steps``: token steps per rollout).
    :param observation_space: the env's observation space (unused: the buffer keeps tokens, not observations).
    :param action_space: ``Discrete(vocab)``.
    :param gamma: discount per token.
    :param gae_lambda: GAE lambda.
    :param n_envs: responses per rollout.
    :param with_action_masks: also hold the action masks [B, T, V] of a masked (NLPO) rollout.
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Discrete,
                 device: torch.device | str = "auto", gamma: float = 1.0, gae_lambda: float = 0.95, n_envs: int = 1,
                 with_action_masks: bool = False):
        super().__init__(buffer_size, observation_space, action_space, device, n_envs)
        self.gamma, self.gae_lambda, self.with_action_masks = gamma, gae_lambda, with_action_masks
        # a local sum -> the sum over every process's rollout, for the advantage whitening (set by the agent)
        self.sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.reset()

    def reset(self) -> None:
        super().reset()
        shape = (self.n_envs, self.buffer_size)
        self.queries = self.query_mask = None
        self.responses = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.response_mask = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.logprobs = torch.zeros(shape, device=self.device)
        self.values = torch.zeros(shape, device=self.device)
        self.rewards = torch.zeros(shape, device=self.device)
        self.action_masks = (torch.ones((*shape, self.action_space.n), dtype=torch.bool, device=self.device)
                             if self.with_action_masks else None)
        self.ref_logprobs: torch.Tensor | None = None  # [B, T] log pi_ref of the tokens, filled by GRPO
        self.advantages = self.returns = None

    def start(self, queries: torch.Tensor, query_mask: torch.Tensor) -> None:
        """Begin a rollout on these left-padded prompts [B, P]."""
        self.reset()
        self.queries, self.query_mask = queries, query_mask

    def add(self, tokens: torch.Tensor, alive: torch.Tensor, logprobs: torch.Tensor, values: torch.Tensor,
            rewards: torch.Tensor, action_masks: torch.Tensor | None = None) -> None:
        """Store token step ``self.pos`` of every response: the sampled tokens, which rows were still writing
        (``alive``), the sampling log-probs, the values of the state before the token, and the env's rewards.
        Entries of finished rows are stored as 0 (their mask is False)."""
        t = self.pos
        self.responses[:, t] = tokens
        self.response_mask[:, t] = alive
        # finished rows keep 0s, so padding columns hold nothing that GAE, whitening or the losses could pick up
        self.logprobs[:, t] = torch.where(alive, logprobs, 0.0)
        self.values[:, t] = torch.where(alive, values, 0.0)
        self.rewards[:, t] = rewards  # the caller zeroes finished rows' rewards (theirs arrive via add_late_rewards)
        if action_masks is not None:
            self.action_masks[:, t] = action_masks
        self.pos += 1
        self.full = self.pos == self.buffer_size

    def add_late_rewards(self, rows: torch.Tensor, rewards: torch.Tensor) -> None:
        """Add rewards paid after the responses ``rows`` ended (an env's deferred scoring), each at its response's
        last token."""
        # a response fills columns 0 .. length - 1 without gaps, so its last token is at column (live count - 1)
        last = self.response_mask[rows].sum(1) - 1
        self.rewards[rows, last] += rewards

    def compute_returns_and_advantage(self, last_values: torch.Tensor | None = None, dones=None) -> None:
        """GAE over the responses. ``last_values``/``dones`` (SB3's signature) are unused: every response ends
        inside the buffer, so the value after it is 0."""
        self.advantages, self.returns = compute_gae(self.rewards, self.values, self.response_mask, self.gamma,
                                                    self.gae_lambda)

    def get(self, batch_size: int, generator: torch.Generator | None = None,
            normalize_advantage: bool = True, group_size: int = 1) -> Iterator[SequenceSamples]:
        """Minibatches of ``batch_size`` whole responses in random order (advantages whitened over the rollout, over
        every process's rollout when :attr:`sum_over_processes` is set). With ``group_size=k``, the groups of k
        consecutive rows (one prompt's responses) are shuffled as units and stay together, in row order, in one
        minibatch (``batch_size`` a multiple of k)."""
        # whitened once over the whole rollout, not per minibatch as SB3's PPO does: a minibatch of a few responses
        # gives noisy statistics. In a data-parallel run they are every process's rollout's, so all processes scale alike
        advantages = (masked_whiten(self.advantages, self.response_mask.float(), total=self.sum_over_processes)
                      if normalize_advantage else self.advantages)
        if group_size == 1:
            order = torch.randperm(self.n_envs, generator=generator)  # the generator is a CPU one
        else:  # group g's rows are g*k .. g*k + k - 1: shuffle the groups, then list each group's rows
            groups = torch.randperm(self.n_envs // group_size, generator=generator)
            order = (groups[:, None] * group_size + torch.arange(group_size)).reshape(-1)
        order = order.to(self.device)
        for start in range(0, self.n_envs, batch_size):
            yield self._samples(order[start:start + batch_size], advantages)

    def _get_samples(self, batch_inds, env=None) -> SequenceSamples:
        """SB3's sampling hook: the responses ``batch_inds`` (advantages not whitened)."""
        return self._samples(torch.as_tensor(batch_inds, device=self.device), self.advantages)

    def _samples(self, idx: torch.Tensor, advantages: torch.Tensor) -> SequenceSamples:
        # columns that any response of this minibatch still writes: the update runs on [:, :used] only
        live_columns = self.response_mask[idx].any(0)
        used = int(live_columns.nonzero().max()) + 1 if live_columns.any() else 1
        return SequenceSamples(self.queries[idx], self.query_mask[idx], self.responses[idx, :used],
                               self.response_mask[idx, :used], self.logprobs[idx, :used], self.values[idx, :used],
                               advantages[idx, :used], self.returns[idx, :used],
                               None if self.action_masks is None else self.action_masks[idx, :used],
                               None if self.ref_logprobs is None else self.ref_logprobs[idx, :used])
