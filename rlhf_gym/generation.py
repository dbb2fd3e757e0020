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
) -> Samples:
    """Sample up to ``max_new_tokens`` per row from ``softmax(logits / temperature)`` with a KV cache."""
    batch = input_ids.shape[0]
    device = input_ids.device
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), device=device)
    mask = torch.zeros((batch, max_new_tokens), dtype=torch.bool, device=device)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask), use_cache=True)
    for t in range(max_new_tokens):
        logp = F.log_softmax(out.logits[:, -1, :].float() / temperature, dim=-1)
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
        out = model(
            input_ids=action[:, None],
            attention_mask=attention_mask,
            position_ids=positions(attention_mask)[:, -1:],
            use_cache=True,
            **cache_kwargs(model, output_cache(out)),
        )
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
