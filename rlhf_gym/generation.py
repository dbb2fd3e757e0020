"""Batched sampling from a Hugging Face causal LM with a KV cache, returning per-token log-probs.

Prompts are left-padded, so every row's next token sits at the last column and one incremental forward
per new token serves the whole batch; ``position_ids`` skip the padding so that a row's positions are
the same as without padding.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .utils import context_length


@dataclass
class Samples:
    """Sampled responses: ``tokens`` [B, T] (``pad_id`` after EOS), ``logprobs`` [B, T], ``mask`` [B, T]."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    mask: torch.Tensor
    ended: torch.Tensor  # [B] bool: the response emitted EOS


def left_pad(sequences: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(input_ids, attention_mask)``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


def cache_kwargs(model, cache) -> dict:
    """``{name: cache}`` for the model's KV-cache argument (``cache`` in transformers 5, else ``past_key_values``)."""
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache}


def output_cache(output):
    """The KV cache an HF model output carries, whatever its transformers version calls it."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


COMPACT_AT = 0.5
"""Drop the finished rows from a lock-step batch's KV cache once at most this share of the rows it holds still write."""
LONG_BUDGET_TOKENS = 64
"""A response budget of at least this many tokens is long: there the long tail of a few late rows costs most, so
sampling compacts its KV cache (:class:`CacheRows`) and PPO's update runs in length buckets
(:data:`rlhf_gym.agents.buckets.LONG_BUDGET_BUCKETS`). Shorter budgets (every embedded task's) keep the full batch and
one padded pass: a compacted step computes a row's logits bit for bit as a full one on the CPUs measured, but not
always its value (the value head's product of one output rounds differently with the number of rows), buckets round
differently too, and such rounding moves single seeds of a published run."""
MIN_CACHED_ROWS = 8
"""Never cut the cache below this many rows: a step of a few rows costs its fixed launch overhead whatever their number,
and matrix products of fewer rows take other kernels, whose rounding differs (a row's
logits are bit-identical in steps of 8 to 64 rows, not in steps of 1 to 4, on the Xeon of docs/benchmarks.md)."""


def long_budget(max_new_tokens: int) -> bool:
    """Whether a response budget is long (:data:`LONG_BUDGET_TOKENS`)."""
    return max_new_tokens >= LONG_BUDGET_TOKENS


class CacheRows:
    """The rows of a lock-step sampling batch that its KV cache still holds: finished rows are dropped from the cache
    once few enough are left, so that a step's cost follows the responses still being written, not the batch.

    Each row's computation is its own (attention never mixes rows), so a compacted step gives the rows it keeps the same
    logits; halving at :data:`COMPACT_AT` bounds the copies to ``log2(batch)`` per rollout and the wasted rows to half
    the cache (or to :data:`MIN_CACHED_ROWS`). ``enabled=False`` keeps every row (:func:`long_budget` decides by budget).
    The batch-sized tensors of the caller (actions, masks, attention) stay full-size: :meth:`take` cuts one to the cached
    rows, :meth:`spread` puts a step's outputs back at their rows.
    """

    def __init__(self, batch: int, device: torch.device | str, enabled: bool):
        self.batch, self.enabled = batch, enabled
        self.rows = torch.arange(batch, device=device)  # the batch rows the cache holds, in the cache's order

    def compact(self, alive: torch.Tensor, *caches) -> tuple:
        """``caches`` without the rows no longer ``alive`` [batch] once at most :data:`COMPACT_AT` of the rows they hold
        are alive, else as they are (None stays None)."""
        if not self.enabled:
            return caches
        keep = alive[self.rows].nonzero().squeeze(-1)
        if not MIN_CACHED_ROWS <= keep.numel() <= COMPACT_AT * self.rows.numel():
            return caches
        self.rows = self.rows[keep]
        return tuple(None if cache is None else select_cache_rows(cache, keep) for cache in caches)

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` [batch, ...] cut to the cached rows."""
        return tensor if self.rows.numel() == self.batch else tensor[self.rows]

    def spread(self, tensor: torch.Tensor) -> torch.Tensor:
        """A step's output for the cached rows, put back at their rows of a [batch, ...] tensor (zeros elsewhere: the
        rows not held have finished, and their outputs are never used)."""
        if self.rows.numel() == self.batch:
            return tensor
        full = tensor.new_zeros((self.batch, *tensor.shape[1:]))
        full[self.rows] = tensor
        return full


def select_cache_rows(cache, index: torch.Tensor):
    """The batch rows ``index`` of an HF KV cache: a ``Cache`` object, cut in place, or the legacy tuple of per-layer
    ``(key, value)`` tensors that older models return, as a new tuple."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(index)
        return cache
    return tuple(tuple(tensor[index] for tensor in layer) for layer in cache)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens (0 for padding)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def query_response_inputs(queries: torch.Tensor, query_mask: torch.Tensor, responses: torch.Tensor,
                          response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and position ids of ``[query; response]`` rows, for one forward per sequence:
    ``queries`` left-padded [B, P], ``responses`` right-padded [B, T]."""
    input_ids = torch.cat([queries, responses], dim=1)
    attention = torch.cat([query_mask, response_mask.long()], dim=1)
    return input_ids, attention, positions(attention)


def response_slice(per_position: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """The rows of a forward over :func:`query_response_inputs` [B, P + T, ...] that predict the response tokens
    [B, T, ...].

    The output at position j predicts token j + 1. Response token t sits at position ``prompt_len + t`` (the queries
    are left-padded to ``prompt_len``), so it is predicted at ``prompt_len - 1 + t``: the slice ``[prompt_len - 1, -1)``
    has one row per response token (a value read there is the value of the state before the token).
    """
    return per_position[:, prompt_len - 1:-1]


def check_prompts_fit(prompt_ids: list[list[int]], max_new_tokens: int, limit: int | None, whose: str,
                      hint: str = "", first_index: int = 0) -> None:
    """A :class:`ConfigError` naming the longest prompt and the lengths when it and ``max_new_tokens`` need more than
    the ``limit`` positions of ``whose`` model (past them, the model fails with an IndexError).

    :param hint: what to do, appended to the message. :param first_index: index of ``prompt_ids[0]`` among all prompts.
    """
    longest = max(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    needed = len(prompt_ids[longest]) + max_new_tokens
    if limit is not None and needed > limit:
        raise ConfigError(f"prompt {first_index + longest} has {len(prompt_ids[longest])} tokens; with max_new_tokens="
                          f"{max_new_tokens} it needs {needed} of {whose}'s {limit} positions{hint}")


@torch.no_grad()
def sample(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    compact: bool | None = None,
) -> Samples:
    """Sample up to ``max_new_tokens`` per row from ``softmax(logits / temperature)`` with a KV cache; ``compact``:
    drop finished rows from the cache (:class:`CacheRows`; None: on a :func:`long_budget`)."""
    batch = input_ids.shape[0]
    device = input_ids.device
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), device=device)
    mask = torch.zeros((batch, max_new_tokens), dtype=torch.bool, device=device)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask), use_cache=True)
    cached = CacheRows(batch, device, long_budget(max_new_tokens) if compact is None else compact)
    logits = out.logits[:, -1, :]
    for t in range(max_new_tokens):
        logp = F.log_softmax(logits.float() / temperature, dim=-1)
        if greedy:
            action = logp.argmax(-1)
        else:
            action = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        action = torch.where(alive, action, torch.full_like(action, pad_id))
        tokens[:, t] = action
        logprobs[:, t] = torch.where(alive, logp.gather(-1, action[:, None]).squeeze(-1), 0.0)
        mask[:, t] = alive
        alive = alive & (action != eos_id)
        if not alive.any() or t == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, alive[:, None].long()], dim=1)
        (cache,) = cached.compact(alive, output_cache(out))
        step_mask = cached.take(attention_mask)
        out = model(
            input_ids=cached.take(action)[:, None],
            attention_mask=step_mask,
            position_ids=positions(step_mask)[:, -1:],
            use_cache=True,
            **cache_kwargs(model, cache),
        )
        logits = cached.spread(out.logits[:, -1, :])
    ended = ((tokens == eos_id) & mask).any(-1)
    return Samples(tokens=tokens, logprobs=logprobs, mask=mask, ended=ended)


def decode_responses(tokenizer, samples: Samples) -> list[str]:
    """Response texts, special tokens removed."""
    return [
        tokenizer.decode(row[m].tolist(), skip_special_tokens=True).strip()
        for row, m in zip(samples.tokens.cpu(), samples.mask.cpu())
    ]


def generate_texts(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    greedy: bool = False,
) -> list[str]:
    """Sample one response per prompt; seeded, batched, on the model's device.

    :raises ConfigError: when a prompt and ``max_new_tokens`` do not fit the model's context.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    responses: list[str] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in chunk]
        check_prompts_fit(encoded, max_new_tokens, context_length(model), "the policy", first_index=start)
        ids, mask = left_pad(encoded, tokenizer.pad_token_id, device)
        samples = sample(model, ids, mask, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                         temperature, generator, greedy)
        responses += decode_responses(tokenizer, samples)
    model.train(was_training)
    return responses
