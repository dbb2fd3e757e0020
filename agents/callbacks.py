"""SB3 callbacks for RLHF runs: the learning curve on disk, and held-out evaluation during training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rlhf_gym.jsonl import append_jsonl, read_jsonl
from rlhf_gym.metrics import EPISODE_METRICS


class LearningCurveCallback(BaseCallback):
    """Appends each rollout's means (proxy and gold reward, KL, length, beta) to a JSONL file.

    The file survives a crash and a resumed run appends to it, so the curve covers the whole run.
    """

    def __init__(self, path: str | Path, verbose: int = 0):
        super().__init__(verbose)
        self.path = Path(path)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        infos = getattr(self.model, "last_rollout_infos", [])
        if not infos:
            return
        row = {"timesteps": int(self.model.num_timesteps), "beta": float(self.model.env.get_attr("beta")[0])}
        for key in EPISODE_METRICS:
            values = [float(i[key]) for i in infos if key in i]
            if values:
                row[key] = float(np.mean(values))
        append_jsonl(self.path, [row])


def read_curve(path: str | Path) -> list[dict]:
    """The learning curve written by :class:`LearningCurveCallback` (empty before the first rollout)."""
    path = Path(path)
    return list(read_jsonl(path)) if path.exists() else []


class HeldOutEvaluation(BaseCallback):
    """Scores the policy on held-out prompts before training and after every ``every`` PPO iterations, keeping
    the summaries and a few samples in :attr:`points`; stops training after ``max_iterations``.

    :param evaluate: ``evaluate(lm) -> rlhf_gym.evaluation.Evaluation`` (see :func:`agents.experiment.held_out_evaluator`).
    :param every: PPO iterations between evaluations.
    :param n_samples: sample texts kept per evaluation.
    :param max_iterations: stop after this many PPO iterations.
    """

    def __init__(self, evaluate: Callable[[Any], Any], every: int, n_samples: int, max_iterations: int):
        super().__init__()
        self.evaluate, self.every, self.n_samples, self.max_iterations = evaluate, every, n_samples, max_iterations
        self.points: list[dict] = []
        self.iterations = 0

    def record(self) -> None:
        ev = self.evaluate(self.model.policy.lm)
        samples = [[p, r] for p, r in zip(ev.prompts[: self.n_samples], ev.responses[: self.n_samples])]
        self.points.append({"iteration": self.iterations, "timesteps": int(self.model.num_timesteps), **ev.summary(),
                            "samples": samples})

    def _on_training_start(self) -> None:
        self.record()

    def _on_rollout_start(self) -> None:  # the policy has been updated `iterations` times
        if self.iterations > 0 and self.iterations % self.every == 0:
            self.record()

    def _on_rollout_end(self) -> None:
        self.iterations += 1

    def _on_training_end(self) -> None:
        if self.points[-1]["iteration"] != self.iterations:
            self.record()

    def _on_step(self) -> bool:
        return self.iterations < self.max_iterations
