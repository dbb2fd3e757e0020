"""Mixed precision by name: what ``--amp`` and ``TokenPPO(amp=...)`` take, readable without importing torch."""

from __future__ import annotations

from typing import Any

AMP_MODES = {"bf16": "bfloat16", "fp16": "float16"}
"""Autocast modes -> the torch dtype each runs the forward passes in (bf16 on CUDA and on the CPU, fp16 on CUDA only)."""


def amp_dtype(mode: str) -> Any:
    """The torch dtype of autocast mode ``mode`` (a key of :data:`AMP_MODES`)."""
    import torch

    return getattr(torch, AMP_MODES[mode])
