"""Sampling with the KV cache compacted as rows finish, against the full batch to the end
(:class:`rlhf_gym.generation.CacheRows`).

A rollout of 64 responses from the ``long-128`` and ``long-256`` workloads' policy (``small``'s size, EOS with chance 1/40
per token: most responses end well before the budget, a few run to it), sampled by
:func:`rlhf_gym.generation.sample` from the same generator seed with and without compaction (the same tokens, checked),
alternating; the median of each is reported with the tokens actually generated.

    python -m rlhf_gym.benchmarks.compaction
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_gym.generation import left_pad, sample

from .workloads import WORKLOADS, build_models

CONFIGS = ("long-128", "long-256")


def time_sampling(config: str, rounds: int = 5) -> dict[str, float]:
    """Median seconds of one rollout's sampling with (``compacted``) and without (``full``) compaction, and the live
    tokens per response."""
    workload = WORKLOADS[config]
    with tempfile.TemporaryDirectory(prefix="rlhf-gym-compaction-") as directory:
        files = build_models(workload, Path(directory), seed=0)
        lm = AutoModelForCausalLM.from_pretrained(files.policy).eval()
        tokenizer = AutoTokenizer.from_pretrained(files.policy)
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in files.prompts[:workload.rollout_batch]]
    queries, query_mask = left_pad(prompts, tokenizer.pad_token_id)
    seconds: dict[str, list[float]] = {"full": [], "compacted": []}
    tokens = {}
    for round_ in range(rounds):
        for setting in seconds:
            start = time.perf_counter()
            samples = sample(lm, queries, query_mask, workload.response_length, tokenizer.eos_token_id,
                             tokenizer.pad_token_id, generator=torch.Generator().manual_seed(round_),
                             compact=setting == "compacted")
            seconds[setting].append(time.perf_counter() - start)
            tokens[setting] = samples.tokens
        if not torch.equal(tokens["full"], tokens["compacted"]):
            raise RuntimeError(f"{config}: compaction changed the sampled tokens")
    return {**{setting: float(np.median(values)) for setting, values in seconds.items()},
            "mean_length": float(samples.mask.sum(1).float().mean()), "longest": int(samples.mask.sum(1).max())}


if __name__ == "__main__":
    for config in CONFIGS:
        result = time_sampling(config)
        print(f"{config}: full batch {result['full'] * 1e3:.0f} ms, compacted {result['compacted'] * 1e3:.0f} ms "
              f"({result['compacted'] / result['full'] - 1:+.0%}); last round's responses: mean "
              f"{result['mean_length']:.1f} tokens, longest {result['longest']}")
