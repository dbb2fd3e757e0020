"""The batched env's own cost per step (no policy) against the policy's passes on the default model.

Drives ``RLHFVectorEnv`` (autoreset disabled) with SFT-policy samples taken beforehand, so that the env's time is
measured alone, in both scoring modes: each response scored at the step it ends (``on_finish``: one reference pass and
one reward-model call per step where some row ends) and scoring deferred to the step where the batch's last row ends
(``deferred``, what :class:`rlhf_gym.agents.TokenPPO` uses: one of each per batch). The env's time splits into its bookkeeping
(appending tokens, flags, observations, infos) and scoring; then one KV-cached policy step and one full-sequence
policy forward are timed on the same batch.

:func:`time_env_steps` and the ``setup.ref_model`` read in :func:`measure` are this module's only reads of the
env's API and internals (``_episodes.finish`` is wrapped to time the scoring).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from rlhf_gym.envs import RLHFVectorEnv
from rlhf_gym.generation import Samples, cache_kwargs, left_pad, output_cache, positions, sample

MODES = ("on_finish", "deferred")


@dataclass(frozen=True)
class ModeTiming:
    """One scoring mode over the timed batches (medians over batches)."""

    mode: str
    bookkeeping_per_step: float  # seconds per env step outside scoring
    scoring_per_batch: float  # seconds of scoring per batch of episodes
    scoring_calls: float  # scoring calls (each one reference pass + one reward-model call) per batch

    def per_step(self, steps: float) -> float:
        """Seconds per env step, scoring spread over the batch's steps."""
        return self.bookkeeping_per_step + self.scoring_per_batch / steps


@dataclass(frozen=True)
class EnvOverhead:
    """The env in both modes against two policy passes over the same batch (times in seconds)."""

    num_envs: int
    repeats: int
    steps: float  # mean env steps per batch of episodes
    modes: tuple[ModeTiming, ...]
    cached_step: float  # one KV-cached policy step
    full_forward: float  # one full policy forward over prompt + response
    context_length: int  # prompt + response tokens of the full forward

    def lines(self) -> list[str]:
        """The report: per mode, the env's time per step against a cached policy step, split into its parts."""
        lines = [f"batched env, {self.num_envs} rows, {self.steps:.1f} steps per batch (medians over {self.repeats} "
                 f"batches); one KV-cached policy step {self.cached_step * 1e3:.2f} ms, one full policy forward over "
                 f"{self.num_envs} x {self.context_length} tokens {self.full_forward * 1e3:.2f} ms"]
        for timing in self.modes:
            lines.append(
                f"{timing.mode:>9}: {timing.per_step(self.steps) * 1e3:.2f} ms per step "
                f"({timing.per_step(self.steps) / self.cached_step:.0%} of a cached policy step) = bookkeeping "
                f"{timing.bookkeeping_per_step * 1e3:.3f} ms ({timing.bookkeeping_per_step / self.cached_step:.1%}) + "
                f"scoring {timing.scoring_per_batch * 1e3:.1f} ms per batch in {timing.scoring_calls:.1f} calls "
                f"({timing.scoring_per_batch / self.full_forward:.2f} full policy forwards)")
        return lines


def time_env_steps(env: RLHFVectorEnv, samples: Samples) -> tuple[float, float, int, int]:
    """Feed pre-sampled responses (and their log-probs) to a freshly reset env token by token until every row is done.

    :return: seconds in total, seconds in scoring, env steps, scoring calls
    """
    episodes = env._episodes  # instrumentation: the scoring step has no public hook
    finish, spent = episodes.finish, []

    def timed_finish(rows):
        start = time.perf_counter()
        result = finish(rows)
        spent.append(time.perf_counter() - start)
        return result

    episodes.finish = timed_finish
    tokens, logprobs = samples.tokens.numpy(), samples.logprobs.numpy()
    start, n = time.perf_counter(), 0
    done = np.zeros(env.num_envs, dtype=bool)
    try:
        for t in range(tokens.shape[1]):
            env.report_logprobs(logprobs[:, t])
            _, _, terminated, truncated, _ = env.step(tokens[:, t])
            done |= terminated | truncated
            n += 1
            if done.all():
                break
    finally:
        episodes.finish = finish
    return time.perf_counter() - start, sum(spent), n, len(spent)


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
    """Time ``repeats`` batches of episodes through the env in each scoring mode (the same samples in both), then the
    policy passes on the last batch."""
    env = RLHFVectorEnv(num_envs=num_envs, autoreset_mode="disabled")
    batches = []
    for repeat in range(repeats):
        _, info = env.reset(seed=seed + repeat)
        ids, mask = left_pad([env.prompt_ids[i] for i in info["prompt_index"]], env.pad_token_id)
        samples = sample(env.ref_model, ids, mask, env.max_new_tokens, env.stop_token_id, env.pad_token_id,
                         generator=torch.Generator().manual_seed(repeat))
        batches.append((info["prompt_index"], samples))
    timings, steps = [], []
    for mode in MODES:
        env.defer_scoring(mode == "deferred")
        runs = []
        for prompt_index, samples in batches:
            env.reset(options={"prompt_indices": prompt_index})
            runs.append(time_env_steps(env, samples))
        steps = [n for _, _, n, _ in runs]
        timings.append(ModeTiming(mode, float(np.median([(total - scoring) / n for total, scoring, n, _ in runs])),
                                  float(np.median([scoring for _, scoring, _, _ in runs])),
                                  float(np.mean([calls for *_, calls in runs]))))
    cached, full = time_policy(env.ref_model, ids, mask, samples)
    return EnvOverhead(num_envs, repeats, float(np.mean(steps)), tuple(timings), float(np.median(cached)),
                       float(np.median(full)), ids.shape[1] + samples.tokens.shape[1])
