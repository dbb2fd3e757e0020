"""Proxy reward models of the reviews task at other sizes, data and seeds (Gao et al. 2022; Coste et al. 2023).

A :class:`ProxySpec` names one proxy: a ``width`` x ``layers`` GPT-2 classifier (the shipped reward model is 64 x 2)
trained from scratch with the shipped recipe on the slice ``records[offset : offset + n_comparisons]`` of the
shipped comparisons (``preferences.jsonl``, 10,000 noisy judgements of SFT pairs), initialised and shuffled with
``seed``. :func:`train_proxy` trains and saves it with its held-out accuracy and its agreement with the gold reward
on the fresh SFT pairs the build measured the shipped reward model on, so every proxy is measured alike.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .gpt2 import gpt2_reward_model
from .preferences import load_preferences
from .proxy_spec import ProxySpec, parse_ints, parse_sizes  # noqa: F401  (parse_ints, parse_sizes re-exported)
from .reward_model import RewardModel
from .reward_settings import REWARD_EPOCHS, RewardTrainingConfig
from .reward_training import save_reward_model, train_reward_model
from .tasks import load_task, world_of
from .tasks.base import Task
from .tasks.building import BuildConfig, SeedStream, gold_agreement
from .tasks.building import standardisation_samples as building_samples
from .tasks.reviews.task import WORLD as REVIEWS


def shipped_comparisons(task: Task | None = None) -> list[dict]:
    """The reviews task's shipped comparisons, in collection order (each a fresh prompt: any slice is a random sample)."""
    task = task or load_task("reviews")
    return load_preferences(task.artifacts_dir / "preferences.jsonl")


def parameter_count(reward_model: RewardModel) -> int:
    """Parameters of the reward model, embeddings included."""
    return sum(p.numel() for p in reward_model.model.parameters())


def train_proxy(spec: ProxySpec, out_dir: str | Path, records: list[dict] | None = None, epochs: int = REWARD_EPOCHS,
                progress: bool = False) -> dict:
    """Train ``spec`` on its slice of ``records`` (default: the shipped comparisons), measure it, save it to ``out_dir``
    (HF format, replaced only once complete); return its metrics.

    :raises ConfigError: when the slice runs past the comparisons.
    """
    task = load_task("reviews")
    records = shipped_comparisons(task) if records is None else records
    if spec.offset + spec.n_comparisons > len(records):
        raise ConfigError(f"proxy {spec.name}: comparisons {spec.offset}..{spec.offset + spec.n_comparisons} run past the "
                          f"{len(records)} shipped ones")
    torch.manual_seed(spec.seed)  # the weights are drawn when the model is built
    proxy = gpt2_reward_model(REVIEWS.tokenizer(), spec.width, spec.layers)
    data = records[spec.offset: spec.offset + spec.n_comparisons]
    metrics = train_reward_model(proxy, data, RewardTrainingConfig(epochs=epochs, seed=spec.seed), progress=progress)
    metrics.update(measure_gold_agreement(proxy, task))
    metrics.update(spec=asdict(spec), parameters=parameter_count(proxy))
    save_reward_model(proxy, out_dir, metrics)
    return metrics


def measure_gold_agreement(reward_fn, task: Task | None = None, policy=None, draw: int = 0) -> dict:
    """``{"gold_agreement", "n_pairs"}`` (and ``"by_type"`` for a task with content-error families) of ``reward_fn``
    (anything with ``score(prompts, responses)``) on the fresh SFT pairs of held-out prompts on which the task's build
    measured the shipped reward model; with ``policy`` (a causal LM on the task's tokenizer, e.g. an RL run's exported
    policy), on pairs of that policy's samples of the same prompts instead: how well the proxy ranks what a policy
    trained on it produces, off the SFT distribution it was trained on. ``draw`` > 0: another draw of pairs of the same
    prompts (draw 0 is the build's)."""
    task = task or load_task("reviews")
    world = world_of(task.name)
    build = BuildConfig.for_world(world)
    prompts = random.Random(build.seed_for(SeedStream.EVAL_SAMPLE)).sample(task.eval_prompts, build.n_eval_samples)
    # a pair's two responses take sampling seeds s and s + 1 (gold_agreement): draw k starts 2k after the build's
    seed = build.seed_for(SeedStream.GOLD_AGREEMENT) + 2 * draw
    return gold_agreement(task.gold_reward, reward_fn, policy if policy is not None else task.load_policy(),
                          task.load_tokenizer(), prompts, build.max_new_tokens, seed, world)


def standardisation_samples(n_samples: int) -> tuple[list[str], list[str]]:
    """The SFT samples (train prompts) of the reviews task on which ensemble members are standardised: the build's
    ENSEMBLE_NORM stream (:func:`rlhf_gym.tasks.building.standardisation_samples`)."""
    task = load_task("reviews")
    return building_samples(task.train_prompts, task.load_policy(), task.load_tokenizer(), BuildConfig(), n_samples)


def standardisation(member, prompts: list[str], responses: list[str]) -> tuple[float, float]:
    """``(shift, scale)``: the member's mean and std on the standardisation samples (Coste et al. 2023)."""
    scores = np.asarray(member(prompts, responses), dtype=np.float64)
    return float(scores.mean()), float(scores.std())
