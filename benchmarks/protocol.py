"""What every benchmarked system is asked to run (:class:`Settings`) and what it reports back (:class:`Run`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings are read by the command's options (and --help), which need no torch
    import torch


@dataclass(frozen=True)
class Settings:
    """The measuring protocol, the same for every system (``scripts/benchmark.py --help`` documents each option)."""

    iterations: int  # timed PPO iterations (the median is reported)
    warmup: int  # untimed PPO iterations run first
    sb3_iterations: int  # timed iterations of the (slow) per-token SB3 baseline
    amp: str  # "bf16" (autocast on CUDA) or "none"
    peak_tflops: float | None  # the card's peak for the update's MFU (None: by device name)
    threads: int  # torch CPU threads per process (0: torch's default)
    seed: int  # seed of model initialisation, prompts and sampling


@dataclass
class Run:
    """What one system measured."""

    iterations: list[dict[str, float]]
    trainable_parameters: int
    mean_response_length: float
    update_tokens: int  # tokens through forward + backward per iteration, all minibatches and epochs


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
