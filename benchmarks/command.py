"""Throughput benchmark: our TokenPPO (and RLOO, GRPO, DPO) vs TRL's trainers vs plain SB3 PPO per token.

One invocation runs the same PPO work through every system, one after the other on the same machine, each
in a fresh process (so that its peak RSS is its own):

* ``ours``: :class:`rlhf_gym.agents.TokenPPO` on :class:`rlhf_gym.agents.RLHFVecEnv` -- one rollout samples ``rollout_batch``
  responses in lock step with a KV cache; the update runs one forward pass per whole sequence per minibatch;
  the value head sits on the policy's trunk;
* ``ours-separate-critic``: the same with a separate value trunk initialised from the reward model
  (TRL's layout: two transformers are trained);
* ``ours-lora``: ``ours`` training LoRA adapters (PEFT; rank 8 on every linear layer and the head) and the value head; the
  reference is the same base model with the adapters off, so one copy of the weights is held, not two (not in the
  default ``--systems``; needs the ``lora`` extra);
* ``trl``: ``trl.experimental.ppo.PPOTrainer`` (TRL 0.29), which needs a separate value model (here a copy of
  the reward model, as in TRL's examples); ``trl-lora``: the same with ``ours-lora``'s adapters on the policy
  (``peft_config``), the reference being the policy with its adapters off;
* ``ours-buckets``: ``ours`` with the update in up to 4 length buckets (PPO's default on budgets of 64 tokens or more);
* ``sb3-per-token``: ``stable_baselines3.PPO`` with :class:`rlhf_gym.agents.TransformerPolicy` on a ``DummyVecEnv`` of
  single :class:`rlhf_gym.envs.RLHFEnv` envs -- one full forward pass per (state, action) sample, in the rollout and in
  every update epoch (the design that the closest prior library measured at about 16 tokens/s);
* ``ours-rloo`` / ``trl-rloo``, ``ours-grpo`` / ``trl-grpo``: :class:`rlhf_gym.agents.RLOO` /
:class:`rlhf_gym.agents.GRPO` on the batched
  env with groups of k = 4 responses per prompt against TRL's ``RLOOTrainer`` / ``GRPOTrainer`` (one generation batch
  of 64 responses to 16 prompts, 4 minibatches x 4 epochs; :mod:`rlhf_gym.benchmarks.critic_free`,
  :mod:`rlhf_gym.benchmarks.trl_online`);
* ``ours-dpo`` / ``trl-dpo``: :class:`rlhf_gym.agents.DPO` against TRL's ``DPOTrainer``, 4 epochs over 64 fixed comparisons in
  minibatches of 16 per iteration, reference log-probs precomputed (:mod:`rlhf_gym.benchmarks.dpo`).

The six systems of the new trainers are not in the default ``--systems``; each ours-X is compared with trl-X.

Models are built locally from configs (random-init ``GPT2LMHeadModel`` policy and ``GPT2ForSequenceClassification``
reward model of the same size, a word-level tokenizer); no hub. Responses have the full length (except on the
``long-*`` workloads, whose policy samples EOS with a fixed chance per token, and where both sides stop at EOS): our env
gets a stop token outside the vocabulary (``stop_token=vocab_size``), TRL gets ``stop_token_id=None`` (its "no stop
token"), and SB3 runs episodes of exactly ``response_length`` steps. Optimizer steps are counted with a global
``torch.optim`` hook and reported per iteration: rollout batch 64, 4 minibatches of 16 responses, 4 epochs = 16
optimizer steps per iteration on every side (TRL: ``per_device_train_batch_size=64``,
``gradient_accumulation_steps=1``, ``num_mini_batches=4``; SB3: ``batch_size = 64 * 24 / 4`` (state, action) samples).

The ``reviews`` workload is the real one: the default task's SFT policy, reward model and train prompts in the shape of
``scripts/train_agent.py``, responses ending at EOS (``ours`` and ``trl`` with the task's stop token) against
``ours-fixed-length``, the same run forced to the full 24 tokens.

    rlhf-gym benchmark                                   # small + medium, all systems, scaling sweep
    rlhf-gym benchmark --quick --systems ours            # smoke test, under a minute
    rlhf-gym benchmark --configs gpt2 --device cuda --amp bf16 --no-sweep
    rlhf-gym benchmark --configs reviews --systems ours,ours-fixed-length,trl --no-sweep
    rlhf-gym benchmark --configs gpt2-cpu --systems ours,ours-lora,trl,trl-lora --no-sweep --iterations 3
    rlhf-gym benchmark --configs long-128,long-256 --systems ours,trl --no-sweep
    rlhf-gym benchmark --systems ours-rloo,trl-rloo,ours-grpo,trl-grpo,ours-dpo,trl-dpo --no-sweep

Writes ``benchmark.json`` and ``benchmark.md`` to ``--out-dir`` and prints the tables.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import Settings
from .runner import run_all, split, sweep_points
from .systems import NEW_TRAINER_SYSTEMS, SYSTEMS, TRL_SYSTEMS
from .workloads import WORKLOADS
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError

AMP_CHOICES = ("bf16", "none")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Args:
    configs: str = arg("small,medium", "comma-separated workloads: small, medium, gpt2 (CUDA only), gpt2-cpu (GPT-2's "
                                       "size, prompt 32, response 64, rollout 8), long-128 and long-256 (responses "
                                       "ending at EOS after about 40 tokens), reviews (the default task of RLHF-v0 in "
                                       "train_agent.py's shape, responses ending at EOS)")
    systems: str = arg("ours,ours-separate-critic,trl,sb3-per-token", f"comma-separated systems: {', '.join(SYSTEMS)}")
    iterations: int = arg(5, "timed PPO iterations per system (the median is reported)")
    warmup: int = arg(1, "untimed PPO iterations run first")
    sb3_iterations: int = arg(1, "timed iterations of the (slow) per-token SB3 baseline")
    sweep: bool = arg(True, "also run the scaling sweep of ours over response length and rollout batch")
    sweep_config: str = arg("small", "workload whose model the sweep uses")
    sweep_response_lengths: str = arg("12,24,48,96", "response lengths of the sweep (at the workload's rollout batch)")
    sweep_rollout_batches: str = arg("16,64,256", "rollout batches of the sweep (at the workload's response length)")
    quick: bool = arg(False, "tiny workload, 2 iterations, tiny sweep, 1 thread unless --threads: a smoke test "
                             "(overrides --configs, the iteration counts and the sweep sizes)")
    device: str = arg("auto", "auto, cpu or cuda", choices=DEVICES)
    amp: str = arg("none", "mixed precision: bf16 (autocast, on CUDA and on the CPU, for every system but the per-token "
                           "SB3 baseline) or none (float32)", choices=AMP_CHOICES)
    response_length: int = arg(0, "every workload's response length instead of its own (0: keep it; synthetic "
                                  "workloads only)")
    peak_tflops: float | None = arg(None, "peak TFLOP/s of the card for the update's MFU (default: by device name "
                                          "for H100/H200, for --amp's precision)")
    threads: int = arg(0, "torch CPU threads per process (0: torch's default)")
    seed: int = arg(0, "seed of model initialisation, prompts and sampling")
    out_dir: str = arg("benchmark_results", "where benchmark.json and benchmark.md are written")

    def __post_init__(self) -> None:
        if self.quick:
            self.configs, self.sweep_config = "quick", "quick"
            self.iterations, self.warmup, self.sb3_iterations = 1, 1, 1
            self.sweep_response_lengths, self.sweep_rollout_batches = "4,8", "4,8"
            self.threads = self.threads or 1  # tiny models gain nothing from threads, and lose a lot on a busy machine
        unknown = [c for c in [*split(self.configs), self.sweep_config] if c not in WORKLOADS]
        if unknown:
            raise ValueError(f"--configs/--sweep-config: unknown workload {unknown[0]!r} (known: {', '.join(WORKLOADS)})")
        unknown = [s for s in split(self.systems) if s not in SYSTEMS]
        if unknown:
            raise ValueError(f"--systems: unknown system {unknown[0]!r} (known: {', '.join(SYSTEMS)})")
        synthetic_only = [s for s in split(self.systems) if s in NEW_TRAINER_SYSTEMS]
        task_configs = [c for c in split(self.configs) if WORKLOADS[c].task is not None]
        if synthetic_only and task_configs:
            raise ValueError(f"--systems {synthetic_only[0]} runs on the synthetic workloads only (their full-length "
                             f"responses and random comparisons), not on {task_configs[0]!r}")
        for name in ("iterations", "sb3_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.threads < 0:
            raise ValueError("--warmup and --threads must be >= 0")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"--amp must be bf16 or none, got {self.amp!r}")
        if self.response_length < 0:
            raise ValueError(f"--response-length must be >= 0, got {self.response_length}")
        for config in split(self.configs) if self.response_length else []:
            workload = WORKLOADS[config]
            if workload.task is not None:
                raise ValueError(f"--response-length: {config!r} is a task workload, whose responses end at EOS")
            if workload.prompt_length + self.response_length > workload.n_positions:
                raise ValueError(f"--response-length {self.response_length}: {config!r}'s model has "
                                 f"{workload.n_positions} positions for a prompt of {workload.prompt_length}")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be auto, cpu or cuda, got {self.device!r}")


def main(args: Args) -> dict[str, Any]:
    # torch, transformers and SB3 only once the command runs: --help stays fast
    from rlhf_gym.utils import resolve_device

    from .measure import quiet
    from .report import build_report, write_report

    quiet()
    device = resolve_device(args.device)
    configs, systems = split(args.configs), split(args.systems)
    if "gpt2" in configs and device.type != "cuda":
        raise ConfigError("--configs gpt2 runs on CUDA only (--device cuda)")
    skipped = [s for s in systems if s in TRL_SYSTEMS] if importlib.util.find_spec("trl") is None else []
    if skipped:
        print(f"trl is not installed (pip install trl==0.29.1): skipping {', '.join(skipped)}")
        systems = [s for s in systems if s not in skipped]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; device {device}")
    settings = Settings(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Settings)})
    base = WORKLOADS[args.sweep_config]
    sweep = sweep_points(base, map(int, split(args.sweep_response_lengths)),
                         map(int, split(args.sweep_rollout_batches))) if args.sweep else None
    workloads = [WORKLOADS[c] if not args.response_length else
                 dataclasses.replace(WORKLOADS[c], name=f"{c}-{args.response_length}", response_length=args.response_length)
                 for c in configs]
    results, sweep_rows = run_all(workloads, systems, settings, device, base, sweep)
    command = shlex.join(["rlhf-gym", "benchmark", *sys.argv[1:]])
    report = build_report(dataclasses.asdict(args), command, device, results, sweep_rows)
    write_report(report, Path(args.out_dir))
    return report
