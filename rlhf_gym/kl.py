"""KL penalty of stage 3: per-token estimators and the beta controllers.

With ``y_t ~ pi`` and ``log_ratio_t = log pi(y_t | .) - log pi_ref(y_t | .)``, two estimators of
``KL(pi || pi_ref)`` per token (Schulman, "Approximating KL divergence", 2020):

* ``k1 = log_ratio`` — unbiased, can be negative for a single sample;
* ``k3 = (r - 1) - log r`` with ``r = pi_ref / pi = exp(-log_ratio)`` — unbiased, always >= 0, lower variance.

The sequence KL is the sum over response tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:  # tensor methods only at run time: the option checks that import this module need no torch
    import torch

KL_ESTIMATORS = ("k1", "k3")


def kl_per_token(policy_logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate from the sampled tokens' log-probs (same shape in, same shape out)."""
    log_ratio = policy_logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return (-log_ratio).expm1() + log_ratio
    raise ConfigError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}")


class FixedKLController:
    """A constant ``beta``."""

    def __init__(self, beta: float):
        self.beta = float(beta)

    def update(self, current_kl: float, n_samples: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict) -> None:
        self.beta = float(state["beta"])


class AdaptiveKLController:
    """Adaptive ``beta`` of Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences".

    ``e = clip(KL / target - 1, -0.2, 0.2)``; ``beta <- beta * (1 + e * n / horizon)`` after ``n`` samples.

    :param beta: initial coefficient.
    :param target: the KL (per sequence, nats) the controller steers towards.
    :param horizon: samples over which a relative error is corrected.
    """

    def __init__(self, beta: float, target: float, horizon: int = 10000):
        if target <= 0 or horizon <= 0:
            raise ConfigError(f"target KL and horizon must be > 0, got {target} and {horizon}")
        self.beta, self.target, self.horizon = float(beta), float(target), int(horizon)

    def update(self, current_kl: float, n_samples: int) -> None:
        if not np.isfinite(current_kl):
            raise ValueError(f"adaptive KL controller got a non-finite KL: {current_kl}")
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.beta *= 1.0 + error * n_samples / self.horizon

    def state_dict(self) -> dict:
        return {"beta": self.beta, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.beta = float(state["beta"])
        self.target = float(state.get("target", self.target))
        self.horizon = int(state.get("horizon", self.horizon))


def make_kl_controller(beta: float, target_kl: float | None = None, horizon: int = 10000):
    """Fixed ``beta`` when ``target_kl`` is None, else the adaptive controller."""
    return FixedKLController(beta) if target_kl is None else AdaptiveKLController(beta, target_kl, horizon)
