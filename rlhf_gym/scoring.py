"""Scoring finished responses for stage 3: ``r_phi(x, y) - beta * KL(x, y)``, batched.

``KL(x, y) = sum_t kl_t`` with ``kl_t`` an estimator (:mod:`rlhf_gym.kl`) of
``log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)``. ``pi_ref`` is computed here with one forward pass
over all finished sequences; ``log pi`` comes from the acting agent. Where the agent reported nothing,
the fallback is ``log pi(y_t) = 0`` (exact for a deterministic agent, an upper bound otherwise), and the
episode's ``info["kl_source"]`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .kl import kl_per_token
from .reward_model import RewardModel

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
FALLBACK_KL_SOURCE = "fallback:deterministic_policy"


def as_reward_fn(reward_model: Any, device: torch.device | str = "cpu") -> RewardFn:
    """A :class:`RewardModel`, an HF name/path, or any ``f(prompts, responses) -> scores``."""
    if isinstance(reward_model, (str, Path)):
        return RewardModel.from_pretrained(reward_model, device=device)
    if callable(reward_model):
        return reward_model
    raise TypeError(f"reward_model must be a RewardModel, an HF name/path or a callable, got {type(reward_model).__name__}")


def checked_scores(scores: Any, prompts: Sequence[str]) -> np.ndarray:
    """Scores as float64, or a :class:`~rlhf_gym.errors.DataError` naming the offending prompt (wrong count, NaN, inf).

    The reward function is the user's (a model directory or a callable), so its bad output is a user error.
    """
    values = np.asarray(scores.detach().cpu() if torch.is_tensor(scores) else scores, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(prompts):
        raise DataError(f"reward function returned {values.shape[0]} scores for {len(prompts)} responses")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"reward function returned {values[i]} for response {i} (prompt {prompts[i]!r}); refusing to use it")
    return values


@torch.no_grad()
def reference_logprobs(model, contexts: torch.Tensor, prompt_lens: torch.Tensor, n_tokens: int,
                       temperature: float = 1.0) -> torch.Tensor:
    """``log pi_ref(y_t | x, y_<t)`` for ``t < n_tokens`` of right-padded ``contexts = [x, y, pad]`` [B, L].

    One forward pass for the batch; entries past a row's response are garbage and must be masked.
    """
    # Right padding sits after every real token, so causal attention never lets it change a real position:
    # attending to everything is exact for the positions we read.
    attention = torch.ones_like(contexts)
    logits = model(input_ids=contexts, attention_mask=attention).logits  # [B, L, V]
    # Response token t of row i is at context position prompt_lens[i] + t and is predicted by the logits one
    # position earlier, prompt_lens[i] - 1 + t. Rows with shorter responses would index past the context:
    # clamping keeps the gather in bounds (those entries are garbage and masked by the caller).
    positions = prompt_lens[:, None] - 1 + torch.arange(n_tokens, device=contexts.device)[None, :]  # [B, T]
    index = positions.clamp(max=contexts.shape[1] - 2)
    picked = logits.gather(1, index[:, :, None].expand(-1, -1, logits.shape[-1])).float() / temperature  # [B, T, V]
    targets = contexts.gather(1, index + 1)  # the token each picked row of logits predicts  [B, T]
    return F.log_softmax(picked, dim=-1).gather(-1, targets[:, :, None]).squeeze(-1)


@dataclass
class ScoredEpisode:
    """The end of one episode: its reward terms and the info the env reports."""

    proxy_reward: float
    kl: float
    kl_per_token: np.ndarray
    ref_logprob: float
    ref_token_logprobs: np.ndarray
    penalty: float
    kl_source: str

    def terminal_reward(self, beta: float) -> float:
        return self.proxy_reward - beta * self.kl - self.penalty


def score_episodes(
    ref_model,
    reward_fn: RewardFn,
    contexts: torch.Tensor,
    prompt_lens: torch.Tensor,
    response_lens: torch.Tensor,
    policy_logprobs: torch.Tensor,
    prompts: Sequence[str],
    responses: Sequence[str],
    eos: Sequence[bool],
    kl_estimator: str = "k1",
    temperature: float = 1.0,
    no_eos_penalty: float = 0.0,
) -> list[ScoredEpisode]:
    """Score finished episodes with one reference pass and one reward-model call.

    :param policy_logprobs: [B, T] reported ``log pi(y_t)``, NaN where the agent reported nothing.
    """
    n_tokens = max(int(response_lens.max()), 1)
    ref = reference_logprobs(ref_model, contexts, prompt_lens, n_tokens, temperature)
    reported = policy_logprobs[:, :n_tokens].to(ref.device)
    missing = torch.isnan(reported)  # tokens the agent reported no log-prob for: the fallback log pi = 0
    kl_tokens = kl_per_token(torch.where(missing, torch.zeros_like(ref), reported), ref, kl_estimator)
    # mask[i, t]: t is a real token of response i (t < its length); the rest of the [B, T] grid is padding
    mask = torch.arange(n_tokens, device=ref.device)[None, :] < response_lens.to(ref.device)[:, None]
    kl_tokens, ref, missing = kl_tokens * mask, ref * mask, missing & mask
    scores = checked_scores(reward_fn(list(prompts), list(responses)), prompts)
    episodes = []
    for i in range(contexts.shape[0]):
        n = int(response_lens[i])
        source = "reported" if not missing[i].any() else (FALLBACK_KL_SOURCE if missing[i, :n].all() else "mixed")
        episodes.append(ScoredEpisode(
            proxy_reward=float(scores[i]), kl=float(kl_tokens[i].sum()),
            kl_per_token=kl_tokens[i, :n].cpu().numpy().astype(np.float64),
            ref_logprob=float(ref[i].sum()), ref_token_logprobs=ref[i, :n].cpu().numpy().astype(np.float32),
            penalty=0.0 if eos[i] else float(no_eos_penalty), kl_source=source))
    return episodes
