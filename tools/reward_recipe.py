"""Train one reward model of a task's build recipe on given comparisons and report its agreement with gold by pair type.

A development tool for issue 27's reward-model experiments: the task build's reward stage alone (the SFT policy with a
new score head, ``rlhf_gym.tasks.building.initial_reward_model``), on a comparisons file an earlier ``rlhf-gym
build-task`` wrote, with the training seed, learning rate and epochs as options, so that recipes can be compared over
seeds without collecting again. ``--pooling sum`` reads the reward as the sum of per-token scores
(``AutoModelForTokenClassification``) instead of the last token's. Prints the agreement table
(``rlhf_gym.pair_types``) on the build's fresh SFT pairs, and the probe table's preference shares::

    python tools/reward_recipe.py --task lists --data /tmp/v1_lists/preferences.jsonl --seed 1
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForTokenClassification

from rlhf_gym.pair_types import content_probes, markdown_agreement
from rlhf_gym.preferences import load_preferences
from rlhf_gym.proxies import measure_gold_agreement
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.reward_training import RewardTrainingConfig, train_reward_model
from rlhf_gym.tasks import load_task, world_of
from rlhf_gym.tasks.building import BuildConfig, initial_reward_model


class SumRewardModel(RewardModel):
    """``r(x, y) = sum_t s(h_t)``: a score per token (a token classifier's one output), summed over the text."""

    def forward(self, prompts, responses):
        batch = self.encode(prompts, responses)
        scores = self.model(**batch).logits.squeeze(-1).float()
        return (scores * batch["attention_mask"]).sum(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="lists")
    parser.add_argument("--data", required=True, help="comparisons JSONL (a build's preferences.jsonl)")
    parser.add_argument("--pooling", choices=("last", "sum"), default="last")
    parser.add_argument("--epochs", type=int, default=RewardTrainingConfig.epochs)
    parser.add_argument("--learning-rate", type=float, default=RewardTrainingConfig.learning_rate)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the score head and the order")
    args = parser.parse_args()
    started = time.time()
    task, world = load_task(args.task), world_of(args.task)
    torch.manual_seed(args.seed)
    if args.pooling == "last":
        reward_model = initial_reward_model(world, BuildConfig.for_world(world), task.policy_dir)
    else:
        reward_model = SumRewardModel(AutoModelForTokenClassification.from_pretrained(task.policy_dir, num_labels=1),
                                      world.tokenizer())
    config = RewardTrainingConfig(epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed)
    metrics = train_reward_model(reward_model, load_preferences(args.data), config, progress=False)
    check = measure_gold_agreement(reward_model, task)
    probes = content_probes(world, reward_model.score, world.prompt_split()[1][:300])
    print(f"{args.task} {args.pooling} lr {args.learning_rate:g} seed {args.seed}: held-out accuracy "
          f"{metrics['eval_accuracy']:.3f}, gold agreement {check['gold_agreement']:.3f}")
    print(markdown_agreement(check["by_type"]))
    print("probes, proxy prefers the ceiling answer:", {k: round(v["prefers_ceiling"], 3) for k, v in probes.items()})
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
