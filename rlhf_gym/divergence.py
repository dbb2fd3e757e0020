"""Guards against divergence: a NaN/inf loss stops training, and a model with non-finite weights is never saved."""

from __future__ import annotations

import torch

from .errors import TrainingDivergedError


def check_finite_loss(loss: torch.Tensor, where: str, hint: str = "try a lower --learning-rate",
                      what: str = "the loss") -> None:
    """Raise :class:`TrainingDivergedError` naming ``where`` when ``loss`` is NaN or inf (before it reaches the weights).

    :param where: what was being trained and when, e.g. ``"PPO iteration 12, epoch 2"``.
    :param what: the checked value's name, e.g. ``"the gradient norm"``.
    """
    if not bool(torch.isfinite(loss.detach()).all()):
        raise TrainingDivergedError(f"{what} became {loss.detach().float().sum().item()} at {where}: training stopped "
                                    f"before the update reached the weights ({hint})")


def non_finite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``module`` that hold a NaN or inf."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, tensor in tensors if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def check_finite_parameters(module: torch.nn.Module, what: str) -> None:
    """Refuse to save ``module`` (described by ``what``) when any of its weights is NaN or inf."""
    bad = non_finite_parameters(module)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise TrainingDivergedError(f"refusing to save {what}: {len(bad)} tensor(s) hold NaN/inf ({shown})")
