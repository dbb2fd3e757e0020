"""Where ours spends an iteration: ``torch.profiler``'s operator table over PPO iterations of a benchmark workload.

    python -m rlhf_gym.benchmarks.profile --config medium          # 1 warm-up and 2 profiled iterations, torch's threads

Prints the mean seconds per profiled iteration and its phases (as the speed benchmark splits them), then the
operators by self CPU time (summed over the threads).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from rlhf_gym.agents import RLHFVecEnv, TokenPPO

from .clock import PHASES, LapAtRolloutStart, PhaseClock
from .ours import time_scoring
from .workloads import BETA, CLIP_RANGE, GAE_LAMBDA, LEARNING_RATE, VF_COEF, WORKLOADS, build_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", choices=[n for n, w in WORKLOADS.items() if w.task is None])
    parser.add_argument("--iterations", type=int, default=2, help="profiled PPO iterations (after one warm-up)")
    parser.add_argument("--rows", type=int, default=25, help="operators to list")
    args = parser.parse_args()
    workload = WORKLOADS[args.config]
    with tempfile.TemporaryDirectory() as tmp:
        files = build_models(workload, Path(tmp), seed=0)
        env = RLHFVecEnv(num_envs=workload.rollout_batch, task=None, ref_model=files.policy, reward_model=files.reward,
                         prompts=files.prompts, max_prompt_tokens=workload.prompt_length,
                         max_new_tokens=workload.response_length, beta=BETA,
                         stop_token=None if workload.ends_at_eos else workload.vocab_size)
        model = TokenPPO("TransformerPolicy", env, learning_rate=LEARNING_RATE,
                         batch_size=workload.rollout_batch // workload.minibatches, n_epochs=workload.epochs,
                         gae_lambda=GAE_LAMBDA, clip_range=CLIP_RANGE, clip_range_vf=CLIP_RANGE, vf_coef=VF_COEF,
                         seed=0, device="cpu")
    model.learn(total_responses=workload.rollout_batch)  # warm-up
    clock = PhaseClock(torch.device("cpu"))
    model.collect_rollouts = clock.timed(model.collect_rollouts, "sampling")  # less the scoring nested in it
    time_scoring(env, clock)
    model.train = clock.timed(model.train, "update")
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        model.learn(total_responses=(1 + args.iterations) * workload.rollout_batch, reset_num_timesteps=False,
                    callback=LapAtRolloutStart(clock))
    clock.lap()
    means = {key: np.mean([it[key] for it in clock.iterations]) for key in ("seconds", *PHASES)}
    print(f"{args.config}, {torch.get_num_threads()} threads, seconds per iteration (profiled): {means['seconds']:.3f} = "
          + ", ".join(f"{phase} {means[phase]:.3f}" for phase in PHASES))
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))

if __name__ == "__main__":
    main()
