"""Mixed precision by name: what ``--amp`` and ``TokenPPO(amp=...)`` take, readable without importing torch, and what
``--amp auto`` picks.

``auto`` is bf16 autocast on CUDA. On a CPU it is bf16 where that was measured to be faster: a CPU with bf16 matrix
units (Intel AMX, or AVX-512 BF16: ``torch.cpu._is_amx_tile_supported()`` / ``_is_avx512_bf16_supported()``) and a
model of hidden size at least :data:`CPU_BF16_MIN_WIDTH`; float32 otherwise. Measured on a 2-core Intel Xeon with AMX
(docs/benchmarks.md, "bf16 on the CPU"): a PPO iteration of the ``medium`` workload (width 256) took 1.20-1.21 s in bf16
against 1.51-1.53 s in float32, of ``small`` (width 128) 0.41-0.42 s against 0.39-0.40 s.
"""

from __future__ import annotations

from typing import Any

AMP_MODES = {"bf16": "bfloat16", "fp16": "float16"}
"""Autocast modes -> the torch dtype each runs the forward passes in (bf16 on CUDA and on the CPU, fp16 on CUDA only)."""


def amp_dtype(mode: str) -> Any:
    """The torch dtype of autocast mode ``mode`` (a key of :data:`AMP_MODES`)."""
    import torch

    return getattr(torch, AMP_MODES[mode])


CPU_BF16_MIN_WIDTH = 256
"""The smallest hidden size at which ``--amp auto`` uses bf16 on a CPU with bf16 units (measured: faster at 256, slower
at 128)."""


def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX-512 BF16), as torch's CPU capability checks say;
    False where torch cannot tell."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def auto_amp(device_type: str, width: int | None) -> str:
    """``--amp auto`` for a model of hidden size ``width`` on a ``device_type`` device: ``bf16`` on CUDA, and on a CPU
    with bf16 units for ``width >= CPU_BF16_MIN_WIDTH``; ``none`` otherwise (a width that cannot be read: ``none``)."""
    if device_type == "cuda":
        return "bf16"
    if device_type == "cpu" and width is not None and width >= CPU_BF16_MIN_WIDTH and cpu_has_bf16_units():
        return "bf16"
    return "none"
