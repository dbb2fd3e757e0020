"""What a policy's samples get wrong: the mean count of each content-error family and the annotators' bias feature.

A development tool for issue 27: samples each given policy (a saved causal LM directory, or ``sft`` for the task's
SFT policy) on the task's first held-out prompts, seed 0, and prints per response the mean of each family's count
(``TaskWorld.content_profile``), of the bias feature ``b`` (``TaskWorld.annotator_bias``), and the mean gold reward::

    python tools/sample_profile.py --task lists_v1 sft runs/lists_v1/runs/RLHF-Lists-v1__leaderboard_ppo__0__*/policy
"""

from __future__ import annotations

import argparse

import numpy as np

from rlhf_gym.generation import generate_texts
from rlhf_gym.tasks import load_task, world_of
from rlhf_gym.utils import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="lists")
    parser.add_argument("--n-prompts", type=int, default=1024)
    parser.add_argument("policies", nargs="+", help="saved policy directories, or sft")
    args = parser.parse_args()
    task, world = load_task(args.task), world_of(args.task)
    prompts = task.eval_prompts[:args.n_prompts]
    for name in args.policies:
        policy = task.load_policy() if name == "sft" else load_model(name, "policy", "policy")
        responses = generate_texts(policy, task.load_tokenizer(), prompts, task.max_new_tokens, seed=0)
        profiles = [world.content_profile(p, r) for p, r in zip(prompts, responses)]
        means = {family: float(np.mean([profile[family] for profile in profiles])) for family in world.content_errors}
        bias = np.mean([world.annotator_bias(p, r) for p, r in zip(prompts, responses)])
        gold = np.mean([world.gold_reward(p, r) for p, r in zip(prompts, responses)])
        print(f"{name}: gold {gold:.3f}, {world.bias_name} {bias:.2f}, errors per response "
              + ", ".join(f"{family} {value:.2f}" for family, value in means.items()))


if __name__ == "__main__":
    main()
