"""The GPU check in one command: the default job in bf16 on CUDA, then the gpt2 workload, ours against TRL, with MFU.

For a machine with one CUDA GPU (an H100-class card finishes both steps in well under 10 minutes by the sizes chosen:
the default job's 12,800 responses of a 0.44 M-parameter policy, and 1 + ``--iterations`` PPO iterations of a 124 M
GPT-2 per system):

1. ``rlhf-gym train`` with every default and ``--device cuda --amp bf16``: gold reward, KL and wall time of the
   default job, to compare with the CPU's float32 figures (README);
2. ``rlhf-gym benchmark --configs gpt2 --systems ours,trl --device cuda --amp bf16 --no-sweep``: seconds per PPO
   iteration of ours and TRL's PPOTrainer on a GPT-2-size model (12 layers, width 768, vocabulary 50,257, prompt 32,
   response 24, 64 responses per rollout), peak CUDA memory, and the update's MFU against the card's peak
   (``--peak-tflops``, default: by the device's name).

Without CUDA it refuses at once; ``--plan`` prints the two steps and their options without running them (anywhere).

    rlhf-gym gpu-check                      # both steps; writes <out-dir>/gpu_check.json
    rlhf-gym gpu-check --plan               # what it would run
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.files import atomic_write_json


@dataclass
class Args:
    out_dir: str = arg("gpu_check", "where both steps write (train/, benchmark/) and gpu_check.json")
    iterations: int = arg(3, "timed PPO iterations per system on the gpt2 workload (the median is reported)")
    peak_tflops: float | None = arg(None, "the card's dense bf16 peak TFLOP/s for the MFU (default: by device name)")
    plan: bool = arg(False, "print the steps and exit (no CUDA needed)")

    def __post_init__(self) -> None:
        check_positive_options(self, ("iterations", "peak_tflops"))


def steps(args: Args) -> dict[str, dict]:
    """The options of each step: ``rlhf-gym train`` and ``rlhf-gym benchmark``."""
    out = Path(args.out_dir)
    return {
        "train": {"device": "cuda", "amp": "bf16", "out_dir": str(out / "train"), "progress_bar": False},
        "benchmark": {"configs": "gpt2", "systems": "ours,trl", "device": "cuda", "amp": "bf16", "sweep": False,
                      "iterations": args.iterations, "peak_tflops": args.peak_tflops, "out_dir": str(out / "benchmark")},
    }


def command_line(options: dict) -> str:
    """``options`` as command-line options: ``--name value``, switches as ``--name`` / ``--no-name`` (last), None left
    out (the command's default)."""
    values = [f"--{k.replace('_', '-')} {v}" for k, v in options.items() if v is not None and not isinstance(v, bool)]
    switches = [f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in options.items() if isinstance(v, bool)]
    return " ".join(values + switches)


def summary_lines(default_job: dict, seconds: float, rows: list[dict]) -> list[str]:
    """The printed result: the default job's figures, then one line per system of the gpt2 workload."""
    lines = [f"default job (bf16, CUDA): gold {default_job['gold_reward']:.3f}, KL {default_job['kl']:.2f}, "
             f"well-formed {default_job['well_formed']:.3f}, {seconds:.0f} s"]
    for row in rows:
        mfu = "n/a" if row["update_mfu"] is None else f"{100 * row['update_mfu']:.1f} %"
        lines.append(f"gpt2 {row['system']}: {row['seconds_per_iteration']:.2f} s per PPO iteration, update MFU {mfu}, "
                     f"CUDA peak {row['cuda_max_memory_allocated_mb']:,.0f} MB")
    times = {row["system"]: row["seconds_per_iteration"] for row in rows}
    if {"ours", "trl"} <= set(times):
        lines.append(f"gpt2: ours is {times['trl'] / times['ours']:.2f}x TRL's PPOTrainer")
    return lines


def main(args: Args) -> dict:
    """Run both steps (or print them with ``--plan``); write and return the figures."""
    plan = steps(args)
    if args.plan:
        for name, options in plan.items():
            print(f"rlhf-gym {name} {command_line(options)}")
        return plan
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("gpu-check needs a CUDA GPU (torch.cuda.is_available() is False); --plan shows its steps")
    from rlhf_gym.agents import train
    from rlhf_gym.benchmarks import command as benchmark

    started = time.time()
    run_dir = train.main(train.Args(**plan["train"]))
    trained = time.time() - started
    default_job = json.loads((Path(run_dir) / "summary.json").read_text())["after"]
    report = benchmark.main(benchmark.Args(**plan["benchmark"]))
    rows = [row for row in report["results"] if row["config"] == "gpt2"]
    lines = summary_lines(default_job, trained, rows)
    print("\n".join(lines))
    result = {"args": asdict(args), "device": torch.cuda.get_device_name(), "default_job": default_job,
              "default_job_seconds": trained, "gpt2": rows, "summary": lines}
    atomic_write_json(Path(args.out_dir) / "gpu_check.json", result)
    return result
