"""Faster kernels for the same functions: transformers' Python-level GELU swapped for torch's fused one.

GPT-2's ``gelu_new`` (``NewGELUActivation``) and ``gelu_fast`` (``FastGELUActivation``) are the tanh approximation of
GELU (Hendrycks & Gimpel 2016), ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, written as six elementwise
tensor ops, each with its own pass over memory and its own backward. ``torch.nn.GELU(approximate="tanh")`` computes the
same formula in one kernel (forward and backward); only the rounding differs (about 1e-6 on a policy's logits).
The weights and the saved config are untouched, so ``save_pretrained`` writes the same model.
"""

from __future__ import annotations

import torch.nn as nn
from transformers.activations import FastGELUActivation, NewGELUActivation

TANH_GELUS = (NewGELUActivation, FastGELUActivation)
"""transformers' activation modules that are the tanh-approximate GELU, computed op by op."""


def fuse_gelu(model: nn.Module) -> int:
    """Replace every tanh-approximate GELU module of ``model`` with ``nn.GELU(approximate="tanh")``, in place.

    :return: the number of modules replaced.
    """
    replaced = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, TANH_GELUS):
                setattr(parent, name, nn.GELU(approximate="tanh"))
                replaced += 1
    return replaced
