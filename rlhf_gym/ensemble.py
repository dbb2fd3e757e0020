"""Reward-model ensembles against over-optimisation (Coste et al. 2023, https://arxiv.org/abs/2310.02743).

``k`` reward models ``r_1..r_k`` that differ only in their seed (initialisation, data order, held-out split)
agree where the comparison data is dense and disagree on text they never saw — where a policy finds the
hacks. Each member's score is first standardised, ``z_i = (r_i - shift_i) / scale_i`` (shift and scale: the
member's mean and std on SFT samples, stored in ``ensemble.json``), so that no member dominates by its
arbitrary Bradley–Terry offset. The objectives:

* ``"mean"``:        ``R = mean_i z_i``;
* ``"worst"``:       ``R = min_i z_i``   (worst-case optimisation, WCO);
* ``"uncertainty"``: ``R = mean_i z_i - lambda * std_i z_i``  (uncertainty-weighted optimisation, UWO;
  Coste et al. penalise the variance, we penalise the standard deviation, which has the reward's units).

An ensemble is a reward function ``f(prompts, responses) -> scores``: pass it as the env's ``reward_model``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .reward_model import RewardModel
from .utils import resolve_device

OBJECTIVES = ("mean", "worst", "uncertainty")
DEFAULT_ENSEMBLE_DIR = Path(__file__).parent / "tasks" / "reviews" / "artifacts_ensemble"
"""The shipped ensemble of the reviews task: ``member_{1,2,3}/`` and ``ensemble.json`` (``scripts/build_ensemble.py``)."""


def combine(scores: np.ndarray, objective: str = "mean", uncertainty_coef: float = 1.0) -> np.ndarray:
    """Reduce standardised member scores [k, batch] to one score per response with ``objective``."""
    if objective == "mean":
        return scores.mean(0)
    if objective == "worst":
        return scores.min(0)
    if objective == "uncertainty":
        return scores.mean(0) - uncertainty_coef * scores.std(0)
    raise ValueError(f"unknown ensemble objective {objective!r}; choose one of {OBJECTIVES}")


class RewardEnsemble:
    """``k`` reward functions combined into one.

    :param members: reward functions ``f(prompts, responses) -> scores`` (e.g. :class:`RewardModel`).
    :param objective: ``"mean"``, ``"worst"`` or ``"uncertainty"``.
    :param uncertainty_coef: ``lambda`` of the ``"uncertainty"`` objective.
    :param shifts: per-member shift of the standardisation (default 0).
    :param scales: per-member scale of the standardisation (default 1).
    """

    def __init__(self, members: Sequence[Callable], objective: str = "mean", uncertainty_coef: float = 1.0,
                 shifts: Sequence[float] | None = None, scales: Sequence[float] | None = None):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown ensemble objective {objective!r}; choose one of {OBJECTIVES}")
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members, self.objective, self.uncertainty_coef = list(members), objective, float(uncertainty_coef)
        self.shifts = np.zeros(len(members)) if shifts is None else np.asarray(shifts, dtype=np.float64)
        self.scales = np.ones(len(members)) if scales is None else np.asarray(scales, dtype=np.float64)
        if self.shifts.shape != (len(members),) or self.scales.shape != (len(members),) or (self.scales <= 0).any():
            raise ValueError(f"need {len(members)} shifts and {len(members)} positive scales")

    @classmethod
    def from_pretrained(cls, directory: str | Path = DEFAULT_ENSEMBLE_DIR, objective: str = "mean",
                        uncertainty_coef: float = 1.0, device: str | torch.device = "cpu") -> RewardEnsemble:
        """Load the members listed in ``directory/ensemble.json`` with their standardisation."""
        manifest_path = Path(directory) / "ensemble.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no ensemble at {directory} (missing ensemble.json); build it with "
                                    "`python scripts/build_ensemble.py`")
        manifest = json.loads(manifest_path.read_text())
        members = [RewardModel.from_pretrained(Path(directory) / m["path"], device=resolve_device(device))
                   for m in manifest["members"]]
        return cls(members, objective, uncertainty_coef, shifts=[m["shift"] for m in manifest["members"]],
                   scales=[m["scale"] for m in manifest["members"]])

    def member_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Standardised scores of every member, shape [k, batch]."""
        raw = np.stack([np.asarray(member(list(prompts), list(responses)), dtype=np.float64) for member in self.members])
        return (raw - self.shifts[:, None]) / self.scales[:, None]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The ensemble's reward of each pair (the objective over the standardised member scores)."""
        return combine(self.member_scores(prompts, responses), self.objective, self.uncertainty_coef)

    __call__ = score


class LazyRewardEnsemble:
    """A :class:`RewardEnsemble` loaded from ``directory`` on its first call.

    What a registered env id can hold in its fixed keyword arguments without loading models at import time
    (``gym.make`` deep-copies the unloaded object, so every env loads its own members).
    """

    def __init__(self, directory: str | Path = DEFAULT_ENSEMBLE_DIR, objective: str = "mean", uncertainty_coef: float = 1.0,
                 device: str = "cpu"):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown ensemble objective {objective!r}; choose one of {OBJECTIVES}")
        self.directory, self.objective, self.uncertainty_coef, self.device = Path(directory), objective, uncertainty_coef, device
        self._ensemble: RewardEnsemble | None = None

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if self._ensemble is None:
            self._ensemble = RewardEnsemble.from_pretrained(self.directory, self.objective, self.uncertainty_coef, self.device)
        return self._ensemble(prompts, responses)

    def __repr__(self) -> str:
        return (f"LazyRewardEnsemble({str(self.directory)!r}, objective={self.objective!r}, "
                f"uncertainty_coef={self.uncertainty_coef})")
