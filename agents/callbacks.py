"""SB3 callbacks for RLHF runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rlhf_gym.preferences import append_jsonl

CURVE_KEYS = ("proxy_reward", "gold_reward", "kl", "response_length", "well_formed")


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
        row = {"timesteps": int(self.model.num_timesteps), "beta": float(self.model.env.vector_env.beta)}
        for key in CURVE_KEYS:
            values = [float(i[key]) for i in infos if key in i]
            if values:
                row[key] = float(np.mean(values))
        append_jsonl(self.path, [row])


def read_curve(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
