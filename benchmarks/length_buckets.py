"""The update's forward and backward pass in one padded pass against length buckets (:mod:`rlhf_gym.agents.buckets`).

A minibatch of 16 responses with the default task's spread of lengths (3 to 24 tokens, 11 on average; ``large``: 4
times as long) after prompts of 8 tokens, on random-init GPT-2 policies of three sizes; the settings alternate, and the
median of each is reported.

    python -m rlhf_gym.benchmarks.length_buckets
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from gymnasium import spaces
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_gym.agents import TransformerPolicy

from .clock import alternate

LENGTHS = [3, 4, 4, 6, 8, 9, 9, 10, 10, 11, 12, 13, 14, 17, 20, 24]
"""Response lengths of the minibatch: the spread of the default task's SFT responses."""

SIZES = {"small": (4, 128, 512, 1), "medium": (6, 256, 2048, 1), "large": (8, 512, 8192, 4)}
"""Policy sizes (layers, width, vocabulary) and how many times longer than :data:`LENGTHS` the responses are: the
``small`` and ``medium`` workloads of the speed benchmark, and a model and responses where compute dominates."""


def time_update_pass(size: str, rounds: int = 2, repeats: int = 4, prompt_length: int = 8) -> dict[int, float]:
    """Median seconds of one forward and backward pass over the minibatch, with 1 and with 4 length buckets."""
    n_layer, n_embd, vocab, stretch = SIZES[size]
    torch.manual_seed(0)
    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_embd // 64, vocab_size=vocab, n_positions=256,
                        bos_token_id=0, eos_token_id=0)
    lm = GPT2LMHeadModel(config)
    policy = TransformerPolicy(spaces.Dict({}), spaces.Discrete(vocab), lambda _: 1e-4, model_name_or_path=lm)
    lengths = torch.tensor(LENGTHS) * stretch
    queries = torch.randint(3, vocab, (len(LENGTHS), prompt_length))
    responses = torch.randint(3, vocab, (len(LENGTHS), int(lengths.max())))
    response_mask = torch.arange(responses.shape[1])[None, :] < lengths[:, None]
    def update_pass(buckets: int) -> Callable[[], None]:
        def call() -> None:
            policy.max_length_buckets = buckets
            logprobs, _, values = policy.evaluate_sequences(queries, torch.ones_like(queries), responses, response_mask,
                                                            entropy_grad=False)
            ((logprobs + values) * response_mask).sum().backward()
        return call

    times = alternate({"1": update_pass(1), "4": update_pass(4)}, rounds, repeats)
    return {int(buckets): seconds for buckets, seconds in times.items()}


if __name__ == "__main__":
    for size in SIZES:
        one, four = time_update_pass(size).values()
        print(f"{size}: one pass {one * 1e3:.1f} ms, 4 buckets {four * 1e3:.1f} ms ({four / one - 1:+.0%})")
