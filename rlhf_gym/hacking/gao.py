"""The Gao et al. (2022) law of reward over-optimisation in RL, and its least-squares fit.

Gao, Schulman & Hilton (2022), "Scaling Laws for Reward Model Overoptimization"
(https://arxiv.org/abs/2210.10760). With ``d = sqrt(KL(pi || pi_ref))``, the gold reward an RL policy gains over
the initial policy follows ``R(d) = d (alpha - b ln d)``: it rises, peaks at ``d* = exp(alpha / b - 1)``, then falls.
``R(d)`` is linear in ``(alpha, b)``, so the fit is ordinary least squares on the features ``(d, -d ln d)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def gao_rl(d: np.ndarray, alpha: float, b: float) -> np.ndarray:
    """``R(d) = d (alpha - b ln d)``, with ``R(0) = 0``."""
    d = np.asarray(d, dtype=np.float64)
    log_d = np.log(np.where(d > 0, d, 1.0))
    return d * (alpha - b * log_d)


@dataclass
class GaoFit:
    """Least-squares fit of :func:`gao_rl`; ``peak_d`` is the ``d`` of the fitted maximum (None if ``b <= 0``)."""

    alpha: float
    b: float
    r2: float
    n_points: int

    @property
    def peak_d(self) -> float | None:
        return float(np.exp(self.alpha / self.b - 1.0)) if self.b > 0 else None

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_d": self.peak_d, "peak_kl": None if self.peak_d is None else self.peak_d ** 2}


def fit_gao(kl: np.ndarray, gain: np.ndarray) -> GaoFit:
    """Fit ``gain = d (alpha - b ln d)`` with ``d = sqrt(max(kl, 0))`` by linear least squares; R² about the mean."""
    d = np.sqrt(np.clip(np.asarray(kl, dtype=np.float64), 0.0, None))
    y = np.asarray(gain, dtype=np.float64)
    features = np.stack([d, -d * np.log(np.where(d > 0, d, 1.0))], axis=1)
    (alpha, b), *_ = np.linalg.lstsq(features, y, rcond=None)
    residual = float(((y - features @ np.array([alpha, b])) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return GaoFit(float(alpha), float(b), 1.0 - residual / total if total > 0 else float("nan"), len(y))


def gold_gain_points(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(KL, gold reward minus the run's gold reward before training) over every evaluation point of ``runs``."""
    kl = [p["kl"] for r in runs for p in r["points"]]
    gain = [p["gold_reward"] - r["points"][0]["gold_reward"] for r in runs for p in r["points"]]
    return np.array(kl), np.array(gain)
