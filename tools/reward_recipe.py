"""Train one reward model of a task's build recipe on given comparisons and report its agreement with gold by pair type.

A development tool for issue 27's reward-model experiments: the task build's reward stage alone (the SFT policy with a
new score head, ``rlhf_gym.tasks.building.initial_reward_model``), on a comparisons file an earlier ``rlhf-gym
build-task`` wrote, with the training seed, learning rate and epochs as options, so that recipes can be compared over
seeds without collecting again. Prints the agreement table (``rlhf_gym.pair_types``) on the build's fresh SFT pairs,
and the probe table's preference shares. Options that change one thing each:

* ``--reward-init scratch --reward-width W --reward-layers L`` trains a fresh ``W`` x ``L`` model instead of the build's
  start (the SFT policy with a score head, for the suite's tasks): a larger reward model than the SFT trunk;
* ``--pooling sum`` (``mean``) reads the reward as the sum (mean) of the response's per-token scores instead of the
  last token's (the build's ``reward_pooling``: :class:`rlhf_gym.reward_model.RewardModel`);
* ``--relabel gold`` labels the same pairs by gold (noise-free, no bias; gold ties left out), ``--relabel annotator``
  by the task's annotator pool with ``--annotator-temperature`` / ``--annotator-flip-rate`` / ``--annotator-bias-weights``
  (ties labelled), so that the labels' part can be told from the pairs' and the model's;
* ``--counterfactual-epochs N`` trains N passes on the file's counterfactual comparisons alone before the ``--epochs``
  passes on all of them (content first, then length), and prints how well the model fits each family's comparisons
  after each stage (``--fit-of DIR``: the same for a saved reward model, such as a task's shipped one);
* ``--standardise`` divides the scores by their std on the build's standardisation samples (``reward_standardise``),
  and ``--save DIR`` saves the reward model, for an RL run on it (``rlhf-gym train --reward-model DIR``)::

    python tools/reward_recipe.py --task lists --data /tmp/v1_lists/preferences.jsonl --seed 1
    python tools/reward_recipe.py --task lists --data /tmp/v1_lists/preferences.jsonl --relabel gold --epochs 10
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from rlhf_gym.commands.rm_quality import agreement_over_draws, markdown_over_draws
from rlhf_gym.labelers import Labeler
from rlhf_gym.pair_types import content_probes, markdown_agreement
from rlhf_gym.pairing import COUNTERFACTUAL, counterfactual_records
from rlhf_gym.preferences import load_preferences
from rlhf_gym.proxies import measure_gold_agreement
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.reward_settings import REWARD_POOLINGS
from rlhf_gym.reward_training import RewardTrainingConfig, save_reward_model, train_reward_model
from rlhf_gym.tasks import load_task, world_of
from rlhf_gym.tasks.building import (N_STANDARDISATION_SAMPLES, BuildConfig, annotator, initial_reward_model,
                                     standardisation_samples, standardise_reward_scale)
from rlhf_gym.tasks.world import TaskWorld


class GoldJudge:
    """The noise-free judge: the response of higher gold; ``"tie"`` for equal gold."""

    def __init__(self, world: TaskWorld):
        self.gold_reward = world.gold_reward

    def seed_pair(self, pair_id: int) -> None:
        """Nothing to seed: the gold judge draws nothing."""

    def __call__(self, prompt: str, response_a: str, response_b: str) -> str:
        gold_a, gold_b = self.gold_reward(prompt, response_a), self.gold_reward(prompt, response_b)
        return "tie" if gold_a == gold_b else "a" if gold_a > gold_b else "b"


def by_family(records: list[dict]) -> dict[str, list[dict]]:
    """Counterfactual ``records`` grouped by family (their ``pair_type`` less the ``counterfactual:`` prefix), sorted."""
    families = defaultdict(list)
    for record in records:
        families[record["pair_type"].removeprefix(COUNTERFACTUAL + ":")].append(record)
    return dict(sorted(families.items()))


def fit_by_family(reward_model: RewardModel, records: list[dict]) -> dict[str, float]:
    """Per counterfactual family, the share of ``records`` whose chosen response the model scores higher: how well it
    fits each kind of content error on the comparisons it is trained on."""
    fit = {}
    for family, group in by_family(records).items():
        prompts = [r["prompt"] for r in group]
        chosen = reward_model.score(prompts, [r["chosen"] for r in group])
        rejected = reward_model.score(prompts, [r["rejected"] for r in group])
        fit[family] = round(float(np.mean(chosen > rejected)), 3)
    return fit


def labels_by_family(world: TaskWorld, records: list[dict]) -> dict[str, float]:
    """Per counterfactual family, the share of ``records`` whose label (chosen over rejected) gold agrees with: the
    most a model can fit of them as gold would."""
    gold = world.gold_reward
    return {family: round(float(np.mean([gold(r["prompt"], r["chosen"]) > gold(r["prompt"], r["rejected"])
                                         for r in group])), 3)
            for family, group in by_family(records).items()}


def relabelled(records: list[dict], judge: Labeler) -> list[dict]:
    """The same pairs judged again by ``judge`` (seeded per pair id), ties and skips left out."""
    out = []
    for record in records:
        first, second = sorted((record["chosen"], record["rejected"]))
        judge.seed_pair(record["pair_id"])
        verdict = judge(record["prompt"], first, second)
        if verdict in ("a", "b"):
            chosen, rejected = (first, second) if verdict == "a" else (second, first)
            out.append({**record, "chosen": chosen, "rejected": rejected})
    return out


def parse_args() -> argparse.Namespace:
    """The command line, with the combinations of options that make no sense refused."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="lists")
    parser.add_argument("--data", required=True, help="comparisons JSONL (a build's preferences.jsonl)")
    parser.add_argument("--pooling", choices=REWARD_POOLINGS, default=None, help="default: the task build's")
    parser.add_argument("--reward-init", choices=("sft", "scratch"), default=None,
                        help="the reward model's start (default: the task build's)")
    parser.add_argument("--reward-width", type=int, default=None, help="--reward-init scratch: hidden size")
    parser.add_argument("--reward-layers", type=int, default=None, help="--reward-init scratch: transformer blocks")
    parser.add_argument("--epochs", type=int, default=RewardTrainingConfig.epochs)
    parser.add_argument("--counterfactual-epochs", type=int, default=0,
                        help="passes over the counterfactual comparisons alone before --epochs passes over all")
    parser.add_argument("--learning-rate", type=float, default=RewardTrainingConfig.learning_rate)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the score head and the order")
    parser.add_argument("--relabel", choices=("none", "gold", "annotator"), default="none")
    parser.add_argument("--annotator-temperature", type=float, default=None)
    parser.add_argument("--annotator-flip-rate", type=float, default=None)
    parser.add_argument("--annotator-bias-weights", default=None, help="comma-separated; empty: one unbiased annotator")
    parser.add_argument("--standardise", action="store_true", help="scores of std 1 on SFT samples of train prompts")
    parser.add_argument("--save", default=None, help="save the reward model in this directory")
    parser.add_argument("--pair-draws", type=int, default=1, help="draws of fresh SFT pairs the agreement is measured on "
                        "(the first is the build's); above 1: also the mean over draws with its 95 %% interval")
    parser.add_argument("--fit-of", default=None, help="train nothing: print how a saved reward model (this directory) "
                                                       "fits each counterfactual family of --data")
    args = parser.parse_args()
    if args.reward_init != "scratch" and (args.reward_width or args.reward_layers):
        parser.error("--reward-width and --reward-layers size a fresh model: they need --reward-init scratch")
    if args.pair_draws < 1:
        parser.error(f"--pair-draws must be >= 1, got {args.pair_draws}")
    return args


def main() -> None:
    args = parse_args()
    started = time.time()
    task, world = load_task(args.task), world_of(args.task)
    records = load_preferences(args.data, include_non_preferences=args.relabel != "none")
    if args.relabel == "gold":
        records = relabelled(records, GoldJudge(world))
    elif args.relabel == "annotator":
        settings = {"annotator_ties": "label"}
        if args.annotator_temperature is not None:
            settings["annotator_temperature"] = args.annotator_temperature
        if args.annotator_flip_rate is not None:
            settings["annotator_flip_rate"] = args.annotator_flip_rate
        if args.annotator_bias_weights is not None:
            settings["annotator_bias_weights"] = tuple(float(w) for w in args.annotator_bias_weights.split(",") if w)
        records = relabelled(records, annotator(world, BuildConfig.for_world(world, **settings)))
    content_records = counterfactual_records(records)
    if args.fit_of:
        fit = fit_by_family(RewardModel.from_pretrained(args.fit_of), content_records)
        print(f"{args.fit_of}: fit by family on {args.data}: {fit}; the labels' agreement with gold by family: "
              f"{labels_by_family(world, content_records)}")
        return
    torch.manual_seed(args.seed)
    start = {name: getattr(args, name) for name in ("reward_init", "reward_width", "reward_layers")
             if getattr(args, name) is not None}
    if args.pooling is not None:
        start["reward_pooling"] = args.pooling
    reward_model = initial_reward_model(world, BuildConfig.for_world(world, **start), task.policy_dir)
    if args.counterfactual_epochs:
        content_first = RewardTrainingConfig(epochs=args.counterfactual_epochs, learning_rate=args.learning_rate,
                                             seed=args.seed)
        content = train_reward_model(reward_model, content_records, content_first, progress=False)
        print(f"content first: held-out accuracy {content['eval_accuracy']:.3f} on the counterfactual comparisons; "
              f"fit by family (all of them): {fit_by_family(reward_model, content_records)}")
    config = RewardTrainingConfig(epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed)
    metrics = train_reward_model(reward_model, records, config, progress=False)
    if args.counterfactual_epochs:
        print(f"after all passes, fit by family: {fit_by_family(reward_model, content_records)}")
    if args.standardise:
        build = BuildConfig.for_world(world)
        samples = standardisation_samples(task.train_prompts, task.load_policy(), task.load_tokenizer(), build,
                                          N_STANDARDISATION_SAMPLES)
        print(f"standardised: scores divided by {standardise_reward_scale(reward_model, *samples):.3f}")
    if args.save:
        save_reward_model(reward_model, args.save, metrics)
    draws = [measure_gold_agreement(reward_model, task, draw=draw) for draw in range(args.pair_draws)]
    check = draws[0]
    probes = content_probes(world, reward_model.score, world.prompt_split()[1][:300])
    print(f"{args.task} {reward_model.pooling} lr {args.learning_rate:g} seed {args.seed} relabel {args.relabel}: "
          f"{len(records)} comparisons, held-out accuracy {metrics['eval_accuracy']:.3f}, "
          f"gold agreement {check['gold_agreement']:.3f}")
    print(markdown_agreement(check["by_type"]))
    if args.pair_draws > 1:
        print(f"over {args.pair_draws} draws of pairs:\n{markdown_over_draws(agreement_over_draws(draws))}")
    print("probes, proxy prefers the ceiling answer:", {k: round(v["prefers_ceiling"], 3) for k, v in probes.items()})
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
