"""Levers for ours' speed at equal precision (issue 31), each measured on the ``small`` and ``medium`` workloads' models
before it is kept or left out (docs/benchmarks.md, "Levers"):

* ``torch.compile`` (inductor) of the update's pass: one forward and backward pass of
  :meth:`rlhf_gym.agents.TransformerPolicy.evaluate_sequences` over a minibatch of 16 full-length sequences (prompt 8,
  response 24), the policy's transformer eager or compiled (the first compiled call, the compilation, timed apart);
* ``torch.compile`` of sampling: :func:`rlhf_gym.generation.sample` of 64 responses of 24 tokens with a KV cache, the
  model eager or compiled with dynamic shapes (the cache grows by one column per step);
* a fused value head: the most it could save, the separate value head's own forward and backward on the pass's hidden
  states, against the whole pass;
* the rollout loop's own cost (the env step, the buffer, the Python per token): ours' sampling phase of one PPO rollout
  (:meth:`rlhf_gym.agents.TokenPPO.collect_rollouts` less the env's scoring) against the bare sampling loop of
  :func:`rlhf_gym.generation.sample` on the same batch: all that fewer launches or no Python per token could save.

Settings alternate after a warm-up, and the median of each is reported.

    python -m rlhf_gym.benchmarks.levers
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from transformers import AutoModelForCausalLM

from rlhf_gym.agents import RLHFVecEnv, TokenPPO, TransformerPolicy
from rlhf_gym.generation import left_pad, sample

from .clock import LapAtRolloutStart, PhaseClock, alternate
from .ours import time_scoring
from .workloads import BETA, WORKLOADS, Workload, build_models

CONFIGS = ("small", "medium")
MINIBATCH = 16


def timed_once(call: Callable[[], None]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def update_levers(workload: Workload, lm: torch.nn.Module) -> dict[str, float]:
    """The update pass eager and compiled, and the value head's share of it."""
    policy = TransformerPolicy(spaces.Dict({}), spaces.Discrete(workload.vocab_size), lambda _: 1e-4,
                               model_name_or_path=lm)
    eager = policy.lm
    queries = torch.randint(3, workload.vocab_size, (MINIBATCH, workload.prompt_length))
    responses = torch.randint(3, workload.vocab_size, (MINIBATCH, workload.response_length))
    response_mask = torch.ones_like(responses, dtype=torch.bool)

    def update_pass(model: torch.nn.Module) -> Callable[[], None]:
        def call() -> None:
            policy.lm = model
            logprobs, _, values = policy.evaluate_sequences(queries, torch.ones_like(queries), responses, response_mask,
                                                            entropy_grad=False)
            (logprobs + values).sum().backward()
        return call

    hidden = torch.randn(MINIBATCH, workload.prompt_length + workload.response_length, workload.n_embd,
                         requires_grad=True)

    def value_head() -> None:
        policy.value_head(hidden).sum().backward()

    compiled = torch.compile(eager)
    compile_seconds = timed_once(update_pass(compiled))
    times = alternate({"eager": update_pass(eager), "compiled": update_pass(compiled), "value_head": value_head})
    policy.lm = eager
    return {"update_eager": times["eager"], "update_compiled": times["compiled"], "update_compile_seconds": compile_seconds,
            "value_head": times["value_head"]}


def sampling_levers(workload: Workload, lm: torch.nn.Module) -> dict[str, float]:
    """Sampling eager and compiled (EOS outside the vocabulary: every response has the full length)."""
    prompts = torch.randint(3, workload.vocab_size, (workload.rollout_batch, workload.prompt_length))

    def sampling(model: torch.nn.Module) -> Callable[[], None]:
        def call() -> None:
            sample(model, prompts, torch.ones_like(prompts), workload.response_length, eos_id=workload.vocab_size,
                   pad_id=0, generator=torch.Generator().manual_seed(0))
        return call

    compiled = torch.compile(lm, dynamic=True)
    compile_seconds = timed_once(sampling(compiled))
    times = alternate({"eager": sampling(lm), "compiled": sampling(compiled)}, repeats=1)
    return {"sampling_eager": times["eager"], "sampling_compiled": times["compiled"],
            "sampling_compile_seconds": compile_seconds}


def rollout_loop(workload: Workload, rollouts: int = 4) -> dict[str, float]:
    """Median seconds of ours' sampling phase per rollout, and of the bare sampling loop on the same model and batch."""
    with tempfile.TemporaryDirectory(prefix="rlhf-gym-levers-") as directory:
        files = build_models(workload, Path(directory), seed=0)
        env = RLHFVecEnv(num_envs=workload.rollout_batch, task=None, ref_model=files.policy, reward_model=files.reward,
                         prompts=files.prompts, max_prompt_tokens=workload.prompt_length,
                         max_new_tokens=workload.response_length, beta=BETA, stop_token=workload.vocab_size)
        model = TokenPPO("TransformerPolicy", env, n_epochs=1, batch_size=workload.rollout_batch, seed=0, device="cpu")
        lm = AutoModelForCausalLM.from_pretrained(files.policy).eval()
    clock = PhaseClock(torch.device("cpu"))
    model.collect_rollouts = clock.timed(model.collect_rollouts, "sampling")  # less the scoring nested in it
    time_scoring(env, clock)
    model.learn(total_responses=(1 + rollouts) * workload.rollout_batch, callback=LapAtRolloutStart(clock))
    clock.lap()
    ours = float(np.median([it["sampling"] for it in clock.iterations[1:]]))
    prompts = [env.batched_env.prompt_ids[i] for i in range(workload.rollout_batch)]
    queries, query_mask = left_pad(prompts, 0)
    bare = alternate({"bare": lambda: sample(lm, queries, query_mask, workload.response_length,
                                             eos_id=workload.vocab_size, pad_id=0)}, rounds=1, repeats=rollouts)["bare"]
    return {"rollout_sampling": ours, "bare_sampling": bare}


def measure(config: str) -> dict[str, float]:
    workload = WORKLOADS[config]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="rlhf-gym-levers-") as directory:
        lm = AutoModelForCausalLM.from_pretrained(build_models(workload, Path(directory), seed=0).policy)
    results = update_levers(workload, lm)
    with torch.no_grad():
        results.update(sampling_levers(workload, lm.eval()))
    results.update(rollout_loop(workload))
    return results


if __name__ == "__main__":
    for config in CONFIGS:
        r = measure(config)
        for part in ("update", "sampling"):
            eager, compiled = r[f"{part}_eager"], r[f"{part}_compiled"]
            print(f"{config} {part}: eager {eager * 1e3:.1f} ms, torch.compile {compiled * 1e3:.1f} ms "
                  f"({compiled / eager - 1:+.0%}; compilation {r[f'{part}_compile_seconds']:.0f} s)")
        print(f"{config} value head, forward and backward: {r['value_head'] * 1e3:.2f} ms "
              f"({r['value_head'] / r['update_eager']:.1%} of the update pass)")
        print(f"{config} sampling phase of a rollout: ours {r['rollout_sampling'] * 1e3:.0f} ms, bare sampling loop "
              f"{r['bare_sampling'] * 1e3:.0f} ms (the loop's own cost {1 - r['bare_sampling'] / r['rollout_sampling']:.0%})")
