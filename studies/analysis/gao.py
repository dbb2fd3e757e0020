"""The Gao et al. (2022) laws of reward over-optimisation, for RL and for best-of-n, and their least-squares fits.

Gao, Schulman & Hilton (2022), "Scaling Laws for Reward Model Overoptimization"
(https://arxiv.org/abs/2210.10760). With ``d = sqrt(KL(pi || pi_ref))``, the gold reward a policy gains over the
initial policy follows

* RL:         ``R(d) = d (alpha - b ln d)``, peak at ``d* = exp(alpha / b - 1)``;
* best-of-n:  ``R(d) = d (alpha - b d)``,    peak at ``d* = alpha / (2 b)``.

Both are linear in ``(alpha, b)``, so each fit is ordinary least squares on two features: ``(d, -d ln d)`` or
``(d, -d²)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FORMS = ("rl", "best_of_n")
"""The two functional forms: ``"rl"`` (``d (alpha - b ln d)``) and ``"best_of_n"`` (``d (alpha - b d)``)."""


def _safe_log(d: np.ndarray) -> np.ndarray:
    """``ln d`` with ``ln 0`` read as 0 (its factor ``d`` is 0 there, so ``d ln d -> 0``)."""
    return np.log(np.where(d > 0, d, 1.0))


def _features(d: np.ndarray, form: str) -> np.ndarray:
    """The two columns ``R(d)`` is linear in: ``(d, -d ln d)`` for RL, ``(d, -d²)`` for best-of-n."""
    if form not in FORMS:
        raise ValueError(f"unknown Gao form {form!r}; choose one of {FORMS}")
    return np.stack([d, -d * (_safe_log(d) if form == "rl" else d)], axis=1)


def gao_rl(d: np.ndarray, alpha: float, b: float) -> np.ndarray:
    """``R(d) = d (alpha - b ln d)``, with ``R(0) = 0``."""
    return _features(np.asarray(d, dtype=np.float64), "rl") @ np.array([alpha, b])


def gao_best_of_n(d: np.ndarray, alpha: float, b: float) -> np.ndarray:
    """``R(d) = d (alpha - b d)``."""
    return _features(np.asarray(d, dtype=np.float64), "best_of_n") @ np.array([alpha, b])


@dataclass
class GaoFit:
    """Least-squares fit of one form; ``peak_d`` is the ``d`` of the fitted maximum (None if ``b <= 0``)."""

    alpha: float
    b: float
    r2: float
    n_points: int
    form: str = "rl"

    @property
    def peak_d(self) -> float | None:
        if self.b <= 0:
            return None
        return float(np.exp(self.alpha / self.b - 1.0)) if self.form == "rl" else self.alpha / (2.0 * self.b)

    def predict(self, d: np.ndarray) -> np.ndarray:
        """The fitted gain at ``d``."""
        return _features(np.asarray(d, dtype=np.float64), self.form) @ np.array([self.alpha, self.b])

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_d": self.peak_d, "peak_kl": None if self.peak_d is None else self.peak_d ** 2}


def fit_gao(kl: np.ndarray, gain: np.ndarray, form: str = "rl") -> GaoFit:
    """Fit ``gain = R(d)`` of ``form`` with ``d = sqrt(max(kl, 0))`` by linear least squares; R² about the mean."""
    d = np.sqrt(np.clip(np.asarray(kl, dtype=np.float64), 0.0, None))
    y = np.asarray(gain, dtype=np.float64)
    features = _features(d, form)
    (alpha, b), *_ = np.linalg.lstsq(features, y, rcond=None)
    residual = float(((y - features @ np.array([alpha, b])) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return GaoFit(float(alpha), float(b), 1.0 - residual / total if total > 0 else float("nan"), len(y), form)


def gold_gain_points(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(KL, gold reward minus the run's gold reward before training) over every evaluation point of ``runs``."""
    kl = [p["kl"] for r in runs for p in r["points"]]
    gain = [p["gold_reward"] - r["points"][0]["gold_reward"] for r in runs for p in r["points"]]
    return np.array(kl), np.array(gain)


def best_of_n_gain_points(curve: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(KL, gold reward minus best-of-1's) over a best-of-n curve (rows with ``n``, ``kl``, ``gold_reward``)."""
    start = next(r["gold_reward"] for r in curve if r["n"] == 1)
    return np.array([r["kl"] for r in curve]), np.array([r["gold_reward"] - start for r in curve])
