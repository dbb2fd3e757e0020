"""SB3 callbacks for RLHF runs, counted in responses: checkpoints, any SB3 callback every N responses, the learning
curve on disk, a progress bar and held-out evaluation during training.

Two units count training, each in its own place:

* **responses** (rlhf-gym's unit, everywhere a user sets or reads a count): a response is one episode, the completion
  of one prompt; a PPO iteration samples ``n_envs`` of them (over all processes of a data-parallel run:
  ``model.responses_per_rollout``), then updates once. ``learn(total_responses=...)``, ``model.num_responses``,
  :class:`ResponseCheckpoint` and :class:`EveryNResponses` (their frequency), the ``responses`` of each learning-curve
  row and the curve's x axis (:func:`rlhf_gym.plots.plot_learning_curve`) and :class:`ResponseProgressBar` count
  responses. These callbacks fire between an update and the next rollout (or at the end of training), so what they
  save or see holds whole PPO iterations.
* **timesteps** (SB3's unit, only where SB3's own API is called directly): one environment step of one row, i.e. one
  token. ``learn(total_timesteps=...)``, ``model.num_timesteps``, ``EveryNTimesteps(n_steps)`` count timesteps, and
  SB3 callbacks that count their ``on_step`` calls (``CheckpointCallback(save_freq)``, ``EvalCallback(eval_freq)``)
  count token steps of the whole batch, ``n_envs`` timesteps each. A rollout lasts as long as its longest response: it
  takes ``n_envs * max_new_tokens`` timesteps (``max_new_tokens`` calls of ``on_step``) when a response uses the whole
  budget, fewer when every response stops early. So ``CheckpointCallback(save_freq=1)`` saves up to ``max_new_tokens``
  times per rollout, mid-rollout (a checkpoint of a partial iteration); :class:`ResponseCheckpoint` saves whole ones.

:class:`HeldOutEvaluation` (the studies' evaluation) counts PPO iterations of ``n_envs`` responses; its points carry
both the iteration and the responses.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, EventCallback
from tqdm import TqdmExperimentalWarning
from tqdm.auto import tqdm

from rlhf_gym.errors import ConfigError
from rlhf_gym.jsonl import append_jsonl, read_jsonl, write_jsonl
from rlhf_gym.metrics import EPISODE_METRICS

# rlhf-gym's progress bars are tqdm.auto's (plain tqdm in a terminal or a log file, a widget in a notebook): here, in the
# offline trainer, the reward model's and SFT's training and collection. SB3's own bar (learn(total_timesteps=...,
# progress_bar=True)) is tqdm.rich, which warns that it is experimental each time it is created: not for our users.
warnings.filterwarnings("ignore", message="rich is experimental", category=TqdmExperimentalWarning)


class LearningCurveCallback(BaseCallback):
    """Appends each rollout's means (proxy and gold reward, KL, length, beta) to a JSONL file, one row per PPO iteration
    with its ``iteration``, ``responses`` (the curve's x axis) and SB3's ``timesteps``.

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


def checkpoint_path(directory: str | Path, count: int, name_prefix: str = "agent", unit: str = "responses") -> Path:
    """Where :class:`ResponseCheckpoint` saves the agent after ``count`` responses (``<prefix>_<count>_responses.zip``,
    SB3's ``<prefix>_<timesteps>_steps.zip`` in our unit, zero-padded to 8 digits so that names sort in order), and
    :class:`ComparisonCheckpoint` after ``count`` comparisons (``unit="comparisons"``)."""
    return Path(directory) / f"{name_prefix}_{count:08d}_{unit}.zip"


class EveryNResponses(EventCallback):
    """Calls ``callback`` (its ``on_step``) every ``n_responses`` responses: SB3's ``EveryNTimesteps`` in responses.

    It fires at the first boundary between PPO iterations (after an update, before the next rollout, or at the end of
    training) at which ``model.num_responses`` has reached a multiple of ``n_responses`` that it had not reached at
    the previous boundary: so the callback sees whole iterations only, at most once per iteration (with ``n_responses``
    below a rollout's responses: after every iteration). A run continued from a checkpoint counts on from the responses
    it has done. A callback that returns False stops training at the first step of the next rollout, before anything
    is learned from it.

    :param n_responses: responses between two calls (> 0).
    :param callback: the callback to call (any SB3 callback; its ``on_step`` is called).
    """

    def __init__(self, n_responses: int, callback: BaseCallback | None = None, verbose: int = 0):
        if not n_responses > 0:
            raise ConfigError(f"n_responses must be > 0, got {n_responses}")
        super().__init__(callback, verbose)
        self.n_responses = int(n_responses)
        self.last_trigger = 0  # num_responses when it last fired (or when training started)
        self._continue = True

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self.last_trigger, self._continue = int(self.model.num_responses), True

    def _due(self) -> bool:
        done = int(self.model.num_responses)
        if done // self.n_responses > self.last_trigger // self.n_responses:
            self.last_trigger = done
            return True
        return False

    def _on_rollout_start(self) -> None:  # the updates of model.n_rollouts iterations are done, the next rollout not begun
        if self._due():
            self._continue = self._on_event()

    def _on_training_end(self) -> None:  # after the last update
        if self._due():
            self._on_event()

    def _on_step(self) -> bool:
        return self._continue


class ResponseCheckpoint(EveryNResponses):
    """Saves the agent every ``every_responses`` responses, at the boundaries of :class:`EveryNResponses` (between an
    update and the next rollout, or at the end of training), so that a checkpoint holds whole PPO iterations (their
    updates, optimizer, KL controller and counters): after ``model.num_responses`` responses, in
    ``checkpoint_path(directory, num_responses, name_prefix)``. With 4 responses per rollout and ``every_responses=6``,
    the checkpoints are those after 8 and 12 responses (the first boundaries at or past 6 and 12).

    ``stable_baselines3.common.callbacks.CheckpointCallback(save_freq)`` also works; it counts token steps and saves
    mid-rollout (see the module's docstring).
    """

    def __init__(self, directory: str | Path, every_responses: int, name_prefix: str = "agent", verbose: int = 0):
        super().__init__(every_responses, verbose=verbose)
        self.directory, self.name_prefix = Path(directory), name_prefix

    def _on_event(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = checkpoint_path(self.directory, int(self.model.num_responses), self.name_prefix)
        self.model.save(path)
        if self.verbose >= 1:
            print(f"Saving model checkpoint to {path}")
        return True


class ComparisonCheckpoint(BaseCallback):
    """The offline algorithms' :class:`ResponseCheckpoint` (the DPO family, ``rlhf-gym train --checkpoint-every``):
    saves the agent after the first optimizer step at or past each multiple of ``every_comparisons`` comparisons
    trained on (``model.num_comparisons``, over all processes), in ``checkpoint_path(directory, num_comparisons,
    name_prefix, unit="comparisons")``. With minibatches of 64 and ``every_comparisons=100``, the checkpoints are those
    after 128 and 256 comparisons. A run continued from a checkpoint counts on from the comparisons it has done.
    """

    def __init__(self, directory: str | Path, every_comparisons: int, name_prefix: str = "agent", verbose: int = 0):
        if not every_comparisons > 0:
            raise ConfigError(f"every_comparisons must be > 0, got {every_comparisons}")
        super().__init__(verbose)
        self.directory, self.every, self.name_prefix = Path(directory), int(every_comparisons), name_prefix
        self.last_save = 0  # num_comparisons at the last checkpoint (or when training started)

    def _on_training_start(self) -> None:
        self.last_save = int(self.model.num_comparisons)

    def _on_step(self) -> bool:  # after an optimizer step
        done = int(self.model.num_comparisons)
        if done // self.every > self.last_save // self.every:
            self.last_save = done
            self.directory.mkdir(parents=True, exist_ok=True)
            path = checkpoint_path(self.directory, done, self.name_prefix, unit="comparisons")
            self.model.save(path)
            if self.verbose >= 1:
                print(f"Saving model checkpoint to {path}")
        return True


class ResponseProgressBar(BaseCallback):
    """A progress bar counted in responses (SB3's counts environment steps), advanced once per rollout."""

    def __init__(self, total_responses: int):
        super().__init__()
        self.total_responses = total_responses
        self.bar = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total_responses, initial=int(self.model.num_responses), unit="responses")

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.bar.update(int(self.model.num_responses) - self.bar.n)

    def _on_training_end(self) -> None:
        self.bar.refresh()
        self.bar.close()


def evaluation_point(evaluation: Any, iteration: int, n_samples: int, **counters: int) -> dict:
    """One point of a study's curve: the run's ``iteration``, its ``counters`` (responses, timesteps, comparisons...),
    the evaluation's summary and its first ``n_samples`` (prompt, response) pairs."""
    samples = [[p, r] for p, r in zip(evaluation.prompts[:n_samples], evaluation.responses[:n_samples])]
    return {"iteration": iteration, **counters, **evaluation.summary(), "samples": samples}


class HeldOutEvaluation(BaseCallback):
    """Scores the policy on held-out prompts before training, after every ``every`` PPO iterations and at the end,
    keeping the summaries and a few samples in :attr:`points` (each with its ``iteration``, ``responses`` and SB3's
    ``timesteps``) and the latest evaluation in :attr:`last`.

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
        self.points.append(evaluation_point(ev, self.iterations, self.n_samples, responses=int(self.model.num_responses),
                                            timesteps=int(self.model.num_timesteps)))

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
