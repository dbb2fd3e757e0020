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
    weights_mb: float | None = None  # every parameter the system holds (policy, reference, reward, value), once each
    training_state_mb: float | None = None  # the optimizer's state and the trained parameters' gradients


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def weights_mb(*modules: torch.nn.Module | None) -> float:
    """MB of the parameters of ``modules``, each storage counted once (a reference shared with the policy, or a tied
    head, is held once)."""
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes()
                for module in modules if module is not None for p in module.parameters()}
    return sum(storages.values()) / 2**20


def training_state_mb(optimizer: torch.optim.Optimizer) -> float:
    """MB of the optimizer's state tensors (AdamW: two moments per trained parameter) and of one gradient per trained
    parameter (held during every step; a trainer may free them between steps)."""
    import torch

    state = [t for per_param in optimizer.state.values() for t in per_param.values() if isinstance(t, torch.Tensor)]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return sum(t.numel() * t.element_size() for t in (*state, *params)) / 2**20
