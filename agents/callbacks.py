"""SB3 callbacks for RLHF runs: the learning curve on disk, checkpoints and a progress bar counted in PPO iterations
and responses, and held-out evaluation during training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from rlhf_gym.jsonl import append_jsonl, read_jsonl, write_jsonl
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
        means = getattr(self.model, "rollout_means", {})  # over every process's responses in a data-parallel run
        if not means:
            return
        row = {"iteration": int(self.model.n_rollouts), "responses": int(self.model.num_responses),
               "timesteps": int(self.model.num_timesteps), "beta": float(self.model.env.get_attr("beta")[0])}
        row.update({key: means[key] for key in EPISODE_METRICS if key in means})
        append_jsonl(self.path, [row])


def read_curve(path: str | Path) -> list[dict]:
    """The learning curve written by :class:`LearningCurveCallback` (empty before the first rollout)."""
    path = Path(path)
    return list(read_jsonl(path)) if path.exists() else []


def truncate_curve(path: str | Path, iterations: int) -> int:
    """Keep the rows of PPO iterations ``<= iterations`` (what a checkpoint taken after that many updates has seen),
    rewriting the file atomically; returns the number of rows dropped (those a killed run wrote past its checkpoint)."""
    rows = read_curve(path)
    kept = [row for row in rows if row["iteration"] <= iterations]
    if len(kept) < len(rows):
        write_jsonl(path, kept)
    return len(rows) - len(kept)


def checkpoint_path(directory: str | Path, iterations: int) -> Path:
    """Where :class:`IterationCheckpoint` saves the agent after ``iterations`` PPO iterations."""
    return Path(directory) / f"agent_{iterations:06d}_iterations.zip"


class IterationCheckpoint(BaseCallback):
    """Saves the agent every ``every`` PPO iterations, between an update and the next rollout, so that a checkpoint
    holds whole iterations only (its ``n_rollouts`` updates, optimizer, KL controller and counters)."""

    def __init__(self, directory: str | Path, every: int, verbose: int = 0):
        super().__init__(verbose)
        self.directory, self.every = Path(directory), every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:  # n_rollouts updates are done, the next rollout has not started
        done = int(self.model.n_rollouts)
        if done > 0 and done % self.every == 0 and not checkpoint_path(self.directory, done).exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.model.save(checkpoint_path(self.directory, done))


class ResponseProgressBar(BaseCallback):
    """A progress bar counted in responses (SB3's counts environment steps), advanced once per rollout."""

    def __init__(self, total_responses: int):
        super().__init__()
        self.total_responses = total_responses
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm.rich import tqdm  # SB3's progress-bar extra, imported only when a bar is asked for

        self.bar = tqdm(total=self.total_responses, initial=int(self.model.num_responses), unit="responses")

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.bar.update(int(self.model.num_responses) - self.bar.n)

    def _on_training_end(self) -> None:
        self.bar.refresh()
        self.bar.close()


class HeldOutEvaluation(BaseCallback):
    """Scores the policy on held-out prompts before training, after every ``every`` PPO iterations and at the end,
    keeping the summaries and a few samples in :attr:`points` and the latest evaluation in :attr:`last`.

    :param evaluate: ``evaluate(lm) -> rlhf_gym.evaluation.Evaluation`` (see
        :func:`rlhf_gym.agents.experiment.held_out_evaluator`).
    :param every: PPO iterations between evaluations.
    :param n_samples: sample texts kept per evaluation.
    :param start: PPO iterations already done (a run continued): the points carry the run's iteration numbers.
    """

    def __init__(self, evaluate: Callable[[Any], Any], every: int, n_samples: int, start: int = 0):
        super().__init__()
        self.evaluate, self.every, self.n_samples = evaluate, every, n_samples
        self.points: list[dict] = []
        self.iterations = start
        self.last = None

    def record(self) -> None:
        self.last = ev = self.evaluate(self.model.policy.lm)
        samples = [[p, r] for p, r in zip(ev.prompts[: self.n_samples], ev.responses[: self.n_samples])]
        self.points.append({"iteration": self.iterations, "timesteps": int(self.model.num_timesteps), **ev.summary(),
                            "samples": samples})

    def _on_training_start(self) -> None:
        self.record()

    def _on_rollout_start(self) -> None:  # the policy has been updated `iterations` times
        # (a continued run has been evaluated at its start: not twice)
        if self.iterations % self.every == 0 and self.points[-1]["iteration"] != self.iterations:
            self.record()

    def _on_rollout_end(self) -> None:
        self.iterations += 1

    def _on_training_end(self) -> None:
        if self.points[-1]["iteration"] != self.iterations:
            self.record()

    def _on_step(self) -> bool:
        return True
