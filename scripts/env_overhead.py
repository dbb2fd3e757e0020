"""The batched env's own cost per step (no policy) against one policy forward pass of the default model.

    python scripts/env_overhead.py --num-envs 64

Drives RLHFVectorEnv (autoreset disabled) with SFT-policy samples taken beforehand, so the env's time
(bookkeeping, observations, and the one reference pass + one reward-model pass when responses end) is
measured alone; then times one KV-cached policy step and one full-sequence policy forward on the same batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from envs import RLHFVectorEnv
from rlhf_gym.cli import arg, run
from rlhf_gym.generation import cache_kwargs, left_pad, output_cache, positions, sample


@dataclass
class Args:
    num_envs: int = arg(64, "rows of the batched env")
    repeats: int = arg(5, "episodes batches to time (the median is reported)")
    seed: int = arg(0, "seed")


def main(args: Args) -> None:
    env = RLHFVectorEnv(num_envs=args.num_envs, autoreset_mode="disabled")
    setup = env.setup
    policy = setup.ref_model
    env_times, steps = [], []
    for repeat in range(args.repeats):
        env.reset(seed=args.seed + repeat)
        ids, mask = left_pad([setup.prompt_ids[i] for i in env.state.prompt_index], setup.pad_token_id)
        samples = sample(policy, ids, mask, setup.max_new_tokens, setup.stop_token_id, setup.pad_token_id,
                         generator=torch.Generator().manual_seed(repeat))
        tokens, logprobs = samples.tokens.numpy(), samples.logprobs.numpy()
        start, n = time.perf_counter(), 0
        for t in range(tokens.shape[1]):
            env.report_logprobs(logprobs[:, t])
            env.step(tokens[:, t])
            n += 1
            if env.state.done.all():
                break
        env_times.append((time.perf_counter() - start) / n)
        steps.append(n)
    contexts = torch.cat([ids, samples.tokens], dim=1)
    context_mask = torch.cat([mask, samples.mask.long()], dim=1)
    cached, full = [], []
    with torch.no_grad():
        for _ in range(20):
            out = policy(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True)
            step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            start = time.perf_counter()
            policy(input_ids=samples.tokens[:, :1], attention_mask=step_mask, position_ids=positions(step_mask)[:, -1:],
                   use_cache=True, **cache_kwargs(policy, output_cache(out)))
            cached.append(time.perf_counter() - start)
            start = time.perf_counter()
            policy(input_ids=contexts, attention_mask=context_mask, position_ids=positions(context_mask))
            full.append(time.perf_counter() - start)
    env_step, step, forward = float(np.median(env_times)), float(np.median(cached)), float(np.median(full))
    print(f"batched env, {args.num_envs} rows: {env_step * 1e3:.2f} ms per step (median over {args.repeats} batches of "
          f"{int(np.mean(steps))} steps, scoring included)")
    print(f"one KV-cached policy step ({args.num_envs} rows): {step * 1e3:.2f} ms; env step / cached step = {env_step / step:.2f}")
    print(f"one full policy forward over prompt + response ({args.num_envs} x {contexts.shape[1]} tokens): "
          f"{forward * 1e3:.2f} ms; env step / full forward = {env_step / forward:.2f}")


if __name__ == "__main__":
    run(main, Args, __doc__)
