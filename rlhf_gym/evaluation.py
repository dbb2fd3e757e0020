"""Evaluate a policy on held-out prompts: proxy reward, gold reward, KL to the reference, length, diversity.

For each prompt one response is sampled (seeded) from the policy; ``KL = sum_t log pi(y_t) - log pi_ref(y_t)``
(k1 on the policy's own samples, an unbiased estimate of ``KL(pi || pi_ref)``), when a reference is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .generation import decode_responses, left_pad, sample
from .scoring import checked_scores, reference_logprobs
from .tasks import DEFAULT_MAX_NEW_TOKENS, Task


@dataclass
class Evaluation:
    """Per-sample results; ``summary()`` gives the means."""

    prompts: list[str]
    responses: list[str]
    proxy_reward: np.ndarray
    kl: np.ndarray | None
    response_length: np.ndarray
    gold_reward: np.ndarray | None = None
    well_formed: np.ndarray | None = None

    def summary(self) -> dict[str, float]:
        out = {"proxy_reward": float(self.proxy_reward.mean()), "kl": None if self.kl is None else float(self.kl.mean()),
               "response_length": float(self.response_length.mean()), "distinct_2": distinct_n(self.responses, 2)}
        if self.gold_reward is not None:
            out["gold_reward"] = float(self.gold_reward.mean())
            out["gold_reward_std"] = float(self.gold_reward.std())
            out["well_formed"] = float(self.well_formed.mean())
        return out


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams over all n-grams of the texts (Li et al. 2016)."""
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def to_context(queries: torch.Tensor, query_mask: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, pad_id: int):
    """Left-padded queries plus responses -> right-padded ``[prompt, response, pad]`` rows and prompt lengths."""
    rows = []
    for q, qm, r, rm in zip(queries.tolist(), query_mask.tolist(), tokens.tolist(), mask.tolist()):
        rows.append([t for t, m in zip(q, qm) if m] + [t for t, m in zip(r, rm) if m])
    # one spare pad column: reference_logprobs clamps its reads to column width - 2, which must exist
    width = max(len(r) for r in rows) + 1
    contexts = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        contexts[i, : len(row)] = torch.tensor(row)
    return contexts.to(queries.device), query_mask.sum(1)


@torch.no_grad()
def evaluate_policy(policy, tokenizer, prompts: list[str], reward_fn, ref_model, task: Task | None = None,
                    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 1.0, seed: int = 0,
                    batch_size: int = 256) -> Evaluation:
    """Sample one response per prompt from ``policy`` (an HF causal LM) and score it; with ``ref_model`` None (no
    reference named) the KL is not measured (``Evaluation.kl`` None)."""
    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    responses, kls, lengths = [], [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        queries, query_mask = left_pad([tokenizer(p, add_special_tokens=False)["input_ids"] for p in chunk],
                                       tokenizer.pad_token_id, device)
        samples = sample(policy, queries, query_mask, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                         temperature, generator)
        if ref_model is not None:
            contexts, prompt_lens = to_context(queries, query_mask, samples.tokens, samples.mask, tokenizer.pad_token_id)
            ref = reference_logprobs(ref_model, contexts.to(next(ref_model.parameters()).device), prompt_lens,
                                     samples.tokens.shape[1], temperature)
            kls.append(((samples.logprobs - ref.to(device)) * samples.mask).sum(1).cpu())
        lengths.append(samples.mask.sum(1).cpu())
        responses += decode_responses(tokenizer, samples)
    proxy = checked_scores(reward_fn(prompts, responses), prompts)
    evaluation = Evaluation(prompts, responses, proxy, torch.cat(kls).numpy().astype(np.float64) if kls else None,
                            torch.cat(lengths).numpy().astype(np.float64))
    if task is not None and task.gold_reward is not None:
        gold = task.gold_scores(prompts, responses)
        evaluation.gold_reward, evaluation.well_formed = gold["gold_reward"], gold["well_formed"]
    return evaluation
