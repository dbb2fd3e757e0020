"""A reward-model ensemble that loads on its first call: what a registered env id holds without importing torch.

``import rlhf_gym`` registers the env ids (:mod:`rlhf_gym.registration`), and one of them fixes an ensemble as its
reward model; this module lets that happen without loading torch or any model, so that ``import rlhf_gym`` and
``rlhf-gym --help`` stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

OBJECTIVES = ("mean", "worst", "uncertainty")
DEFAULT_ENSEMBLE_DIR = Path(__file__).parent / "tasks" / "reviews" / "artifacts_ensemble"
"""The shipped ensemble of the reviews task: ``member_{1,2,3}/`` and ``ensemble.json`` (``rlhf-gym build-ensemble``)."""


class LazyRewardEnsemble:
    """A :class:`RewardEnsemble` loaded from ``directory`` on its first call.

    What a registered env id can hold in its fixed keyword arguments without loading models at import time
    (``gym.make`` deep-copies the unloaded object, so every env loads its own members).
    """

    def __init__(self, directory: str | Path = DEFAULT_ENSEMBLE_DIR, objective: str = "mean", uncertainty_coef: float = 1.0,
                 device: str = "cpu"):
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown ensemble objective {objective!r}; choose one of {OBJECTIVES}")
        self.directory, self.objective, self.uncertainty_coef = Path(directory), objective, uncertainty_coef
        self.device = device
        self._ensemble = None  # the loaded RewardEnsemble

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> Any:
        """The ensemble's scores (a NumPy array), loading its members first if this is the first call."""
        if self._ensemble is None:
            from .ensemble import RewardEnsemble  # torch and the models, only now

            self._ensemble = RewardEnsemble.from_pretrained(self.directory, self.objective, self.uncertainty_coef, self.device)
        return self._ensemble(prompts, responses)

    def __repr__(self) -> str:
        return (f"LazyRewardEnsemble({str(self.directory)!r}, objective={self.objective!r}, "
                f"uncertainty_coef={self.uncertainty_coef})")
