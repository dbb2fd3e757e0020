"""The batched env's own cost per step (no policy) against one policy forward pass of the default model.

Drives ``RLHFVectorEnv`` (autoreset disabled) with SFT-policy samples taken beforehand, so the env's time
(bookkeeping, observations, and the one reference pass + one reward-model pass when responses end) is
measured alone; then times one KV-cached policy step and one full-sequence policy forward on the same batch.

:func:`time_env_steps` and the ``setup.ref_model`` read in :func:`measure` are this module's only reads of the
env's API and internals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from envs import RLHFVectorEnv
from rlhf_gym.generation import Samples, cache_kwargs, left_pad, output_cache, positions, sample


@dataclass(frozen=True)
class EnvOverhead:
    """One env step against two policy passes over the same batch (times: medians, in seconds)."""

    num_envs: int
    repeats: int
    env_step: float  # one env step, scoring of finished responses included
    steps: float  # mean env steps per batch of episodes
    cached_step: float  # one KV-cached policy step
    full_forward: float  # one full policy forward over prompt + response
    context_length: int  # prompt + response tokens of the full forward

    def lines(self) -> list[str]:
        """The three lines of the report."""
        env_line = (f"batched env, {self.num_envs} rows: {self.env_step * 1e3:.2f} ms per step (median over "
                    f"{self.repeats} batches of {int(self.steps)} steps, scoring included)")
        cached_line = (f"one KV-cached policy step ({self.num_envs} rows): {self.cached_step * 1e3:.2f} ms; "
                       f"env step / cached step = {self.env_step / self.cached_step:.2f}")
        full_line = (f"one full policy forward over prompt + response ({self.num_envs} x {self.context_length} tokens): "
                     f"{self.full_forward * 1e3:.2f} ms; env step / full forward = {self.env_step / self.full_forward:.2f}")
        return [env_line, cached_line, full_line]


def time_env_steps(env: RLHFVectorEnv, seed: int, generator: torch.Generator
                   ) -> tuple[float, int, torch.Tensor, torch.Tensor, Samples]:
    """Reset the env, sample its responses from the reference (SFT) policy beforehand, then feed them to the env
    token by token (with their log-probs) until every response is done.

    :return: seconds per env step, env steps, the left-padded prompts and their mask, and the samples
    """
    _, info = env.reset(seed=seed)
    ids, mask = left_pad([env.prompt_ids[i] for i in info["prompt_index"]], env.pad_token_id)
    samples = sample(env.ref_model, ids, mask, env.max_new_tokens, env.stop_token_id, env.pad_token_id,
                     generator=generator)
    tokens, logprobs = samples.tokens.numpy(), samples.logprobs.numpy()
    start, n = time.perf_counter(), 0
    done = np.zeros(env.num_envs, dtype=bool)
    for t in range(tokens.shape[1]):
        env.report_logprobs(logprobs[:, t])
        _, _, terminated, truncated, _ = env.step(tokens[:, t])
        done |= terminated | truncated
        n += 1
        if done.all():
            break
    return (time.perf_counter() - start) / n, n, ids, mask, samples


def time_policy(policy: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, samples: Samples,
                repeats: int = 20) -> tuple[list[float], list[float]]:
    """Seconds of one KV-cached policy step after the prompts, and of one full forward over prompt + response."""
    contexts = torch.cat([ids, samples.tokens], dim=1)
    context_mask = torch.cat([mask, samples.mask.long()], dim=1)
    cached, full = [], []
    with torch.no_grad():
        for _ in range(repeats):
            out = policy(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True)
            step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            start = time.perf_counter()
            policy(input_ids=samples.tokens[:, :1], attention_mask=step_mask, position_ids=positions(step_mask)[:, -1:],
                   use_cache=True, **cache_kwargs(policy, output_cache(out)))
            cached.append(time.perf_counter() - start)
            start = time.perf_counter()
            policy(input_ids=contexts, attention_mask=context_mask, position_ids=positions(context_mask))
            full.append(time.perf_counter() - start)
    return cached, full


def measure(num_envs: int, repeats: int, seed: int) -> EnvOverhead:
    """Time ``repeats`` batches of episodes through the env, then the policy passes on the last batch."""
    env = RLHFVectorEnv(num_envs=num_envs, autoreset_mode="disabled")
    env_times, steps = [], []
    for repeat in range(repeats):
        seconds, n, ids, mask, samples = time_env_steps(env, seed + repeat, torch.Generator().manual_seed(repeat))
        env_times.append(seconds)
        steps.append(n)
    cached, full = time_policy(env.ref_model, ids, mask, samples)
    return EnvOverhead(num_envs, repeats, float(np.median(env_times)), float(np.mean(steps)), float(np.median(cached)),
                       float(np.median(full)), ids.shape[1] + samples.tokens.shape[1])
