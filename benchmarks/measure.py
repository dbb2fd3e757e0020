"""One system on one workload, in the current process: its timings, optimizer steps, FLOP/s and memory."""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers.utils import logging as hf_logging

from . import critic_free, dpo, ours, sb3
from .clock import PHASES, PhaseClock
from .protocol import Run, Settings
from .systems import NEW_TRAINER_SYSTEMS, SYSTEMS, TRL_SYSTEMS  # noqa: F401  (NEW_TRAINER_SYSTEMS, TRL_SYSTEMS re-exported)
from .workloads import LORA, ModelFiles, Workload

# Dense peak TFLOP/s per card, (bf16, fp32 without TF32), from NVIDIA's data sheets; the first name found in
# torch.cuda.get_device_name() wins.
PEAK_TFLOPS = {"H100 PCIe": (756.0, 51.0), "H100 NVL": (835.0, 60.0), "H100": (989.0, 67.0), "H200": (989.0, 67.0)}


def quiet() -> None:
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def peak_tflops(settings: Settings, device: torch.device) -> float | None:
    if settings.peak_tflops is not None:
        return settings.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for card, (bf16, fp32) in PEAK_TFLOPS.items():
        if card in name:
            return bf16 if settings.amp == "bf16" else fp32
    return None


def run_system(system: str, workload: Workload, files: ModelFiles, settings: Settings, device: torch.device,
               clock: PhaseClock) -> Run:
    if system in ("trl", "trl-lora"):
        from . import trl  # an optional extra: imported only when selected

        return trl.run(workload, files, settings, device, clock, lora=LORA if system == "trl-lora" else None)
    if system == "sb3-per-token":
        return sb3.run(workload, files, settings, device, clock)
    if system in ("ours-rloo", "ours-grpo"):
        return critic_free.run(system.removeprefix("ours-"), workload, files, settings, device, clock)
    if system in ("trl-rloo", "trl-grpo"):
        from . import trl_online  # an optional extra: imported only when selected

        return trl_online.run(system.removeprefix("trl-"), workload, files, settings, device, clock)
    if system == "ours-dpo":
        return dpo.run_ours(workload, files, settings, device, clock)
    if system == "trl-dpo":
        return dpo.run_trl(workload, files, settings, device, clock)
    return ours.run(workload, files, settings, device, clock, separate_critic=system == "ours-separate-critic",
                    lora=LORA if system == "ours-lora" else None, fixed_length=system == "ours-fixed-length",
                    length_buckets=4 if system == "ours-buckets" else None)


def measure(system: str, workload: Workload, files: ModelFiles, settings: Settings, device_name: str) -> dict[str, Any]:
    """Run one system on one workload (in its own process) and summarise its timings and memory."""
    quiet()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(device_name)
    rss_after_imports, load_before = peak_rss_mb(), os.getloadavg()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = PhaseClock(device)
    hook = register_optimizer_step_post_hook(lambda *_: clock.count("optimizer_steps"))
    try:
        run = run_system(system, workload, files, settings, device, clock)
    finally:
        hook.remove()
    timed = run.iterations[settings.warmup:]
    median = {key: float(np.median([it.get(key, 0.0) for it in timed])) for key in ("seconds", *PHASES, "other",
                                                                                      "optimizer_steps")}
    responses = workload.rollout_batch * (dpo.RESPONSES_PER_COMPARISON if system.endswith("-dpo") else 1)
    tokens = responses * run.mean_response_length
    update_flops = 6 * run.trainable_parameters * run.update_tokens
    peak = peak_tflops(settings, device)
    return {
        "config": workload.name, "workload": dataclasses.asdict(workload), "system": system, "description": SYSTEMS[system],
        "seconds_per_iteration": median["seconds"], "response_tokens_per_second": tokens / median["seconds"],
        "phases": {key: median[key] for key in (*PHASES, "other")},
        "optimizer_steps_per_iteration": int(median["optimizer_steps"]),
        "responses_per_iteration": responses, "mean_response_length": run.mean_response_length,
        "trainable_parameters": run.trainable_parameters,
        "update_tokens_per_iteration": run.update_tokens,
        "update_tflops_per_second": update_flops / median["update"] / 1e12,
        "update_mfu": update_flops / median["update"] / (peak * 1e12) if peak else None,
        "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": rss_after_imports,
        "weights_mb": run.weights_mb, "training_state_mb": run.training_state_mb,
        "cuda_max_memory_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "timed_iterations": len(timed), "iterations": run.iterations, "threads": torch.get_num_threads(),
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
    }


def measure_sweep(base: Workload, points: list[tuple[int, int]], files: ModelFiles, settings: Settings,
                  device_name: str) -> list[dict[str, Any]]:
    """Ours at each (response length, rollout batch) point, on the base workload's model."""
    rows = []
    for length, batch in points:
        workload = dataclasses.replace(base, response_length=length, rollout_batch=batch)
        result = measure("ours", workload, files, settings, device_name)
        rows.append({"response_length": length, "rollout_batch": batch, **{k: result[k] for k in (
            "seconds_per_iteration", "response_tokens_per_second", "phases", "optimizer_steps_per_iteration")}})
    return rows
