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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cli import arg
from .errors import ConfigError, DataError, MissingFileError
from .files import read_json

from .lazy_ensemble import DEFAULT_ENSEMBLE_DIR, OBJECTIVES, LazyRewardEnsemble  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # torch and the models only once members load: ProxyRewardArgs (a command's --help) needs neither
    import torch

    from .reward_model import RewardModel


def combine(scores: np.ndarray, objective: str = "mean", uncertainty_coef: float = 1.0) -> np.ndarray:
    """Reduce standardised member scores [k, batch] to one score per response with ``objective``."""
    if objective == "mean":
        return scores.mean(0)
    if objective == "worst":
        return scores.min(0)
    if objective == "uncertainty":
        return scores.mean(0) - uncertainty_coef * scores.std(0)
    raise ConfigError(f"unknown ensemble objective {objective!r}; choose one of {OBJECTIVES}")


def read_manifest(path: Path) -> list[dict]:
    """The members of an ``ensemble.json``: each with a ``path``, a finite ``shift`` and a positive ``scale``.

    :raises DataError: naming ``path`` if it is not JSON or a member lacks one of these.
    """
    members = read_json(path, ("members",), "an ensemble manifest")["members"]

    def valid(member: Any) -> bool:
        try:
            return isinstance(member["path"], str) and math.isfinite(float(member["shift"])) and float(member["scale"]) > 0
        except (KeyError, TypeError, ValueError):
            return False

    if not isinstance(members, list) or not members or not all(valid(m) for m in members):
        raise DataError(f"{path}: 'members' must be a non-empty list, each with a 'path', a finite 'shift' and a 'scale' > 0")
    return members


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
            raise ConfigError(f"unknown ensemble objective {objective!r}; choose one of {OBJECTIVES}")
        if len(members) < 1:
            raise ConfigError("an ensemble needs at least one member")
        self.members, self.objective, self.uncertainty_coef = list(members), objective, float(uncertainty_coef)
        self.shifts = np.zeros(len(members)) if shifts is None else np.asarray(shifts, dtype=np.float64)
        self.scales = np.ones(len(members)) if scales is None else np.asarray(scales, dtype=np.float64)
        if self.shifts.shape != (len(members),) or self.scales.shape != (len(members),) or (self.scales <= 0).any():
            raise ConfigError(f"need {len(members)} shifts and {len(members)} positive scales")

    @classmethod
    def from_pretrained(cls, directory: str | Path = DEFAULT_ENSEMBLE_DIR, objective: str = "mean",
                        uncertainty_coef: float = 1.0, device: str | torch.device = "cpu") -> RewardEnsemble:
        """Load the members listed in ``directory/ensemble.json`` with their standardisation.

        :raises MissingFileError: if there is no ``ensemble.json`` or a member cannot be loaded.
        :raises DataError: if ``ensemble.json`` is malformed (the message names it).
        """
        from .reward_model import RewardModel
        from .utils import resolve_device

        manifest_path = Path(directory) / "ensemble.json"
        if not manifest_path.is_file():
            raise MissingFileError(f"no ensemble at {directory} (missing ensemble.json); build it with "
                                   "`rlhf-gym build-ensemble`")
        entries = read_manifest(manifest_path)
        members = [RewardModel.from_pretrained(Path(directory) / m["path"], device=resolve_device(device)) for m in entries]
        return cls(members, objective, uncertainty_coef, shifts=[m["shift"] for m in entries],
                   scales=[m["scale"] for m in entries])

    def member_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Standardised scores of every member, shape [k, batch]."""
        raw = np.stack([np.asarray(member(list(prompts), list(responses)), dtype=np.float64) for member in self.members])
        return (raw - self.shifts[:, None]) / self.scales[:, None]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The ensemble's reward of each pair (the objective over the standardised member scores)."""
        return combine(self.member_scores(prompts, responses), self.objective, self.uncertainty_coef)

    __call__ = score


@dataclass
class ProxyRewardArgs:
    """Command-line options that choose the proxy reward: the task's reward model (default) or the ensemble."""

    ensemble_objective: str | None = arg(None, "use the reward-model ensemble with this objective: mean, worst or "
                                               "uncertainty (default: the task's single reward model)",
                                         choices=OBJECTIVES)
    uncertainty_coef: float = arg(1.0, "lambda of the uncertainty objective (mean - lambda * std)")
    ensemble_dir: str = arg(str(DEFAULT_ENSEMBLE_DIR), "directory of the ensemble (ensemble.json and its members)")
    reward_model: str | None = arg(None, "directory of another reward model to use as the proxy (default: the task's)")

    def __post_init__(self) -> None:
        if self.ensemble_objective is not None and self.ensemble_objective not in OBJECTIVES:
            raise ConfigError(f"--ensemble-objective must be one of {OBJECTIVES}, got {self.ensemble_objective!r}")
        if self.ensemble_objective is not None and self.reward_model is not None:
            raise ConfigError("--reward-model and --ensemble-objective each choose the proxy: give one of them")
        if self.reward_model is not None and not Path(self.reward_model).is_dir():
            raise MissingFileError(f"--reward-model: no such directory: {self.reward_model}")

    @property
    def proxy_name(self) -> str:
        if self.reward_model is not None:
            return f"reward model {Path(self.reward_model).name}"
        return f"ensemble ({self.ensemble_objective})" if self.ensemble_objective else "reward model"

    def load_proxy(self) -> RewardEnsemble | RewardModel | None:
        """The ensemble or ``--reward-model``, or None for the task's reward model (which the env or the caller loads)."""
        if self.reward_model is not None:
            from .reward_model import RewardModel

            return RewardModel.from_pretrained(self.reward_model)
        if self.ensemble_objective is None:
            return None
        return RewardEnsemble.from_pretrained(self.ensemble_dir, self.ensemble_objective, self.uncertainty_coef)
