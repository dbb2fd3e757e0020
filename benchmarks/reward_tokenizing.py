"""A reward-model training step with its texts tokenized in the step against tokenized once beforehand.

:func:`rlhf_gym.reward_training.train_reward_model` tokenizes its comparisons once (:meth:`RewardModel.tokenize`) and
pads each batch of ids (:meth:`RewardModel.collate`); before, every step tokenized its 64 texts and their prompts again,
in every epoch. The step here is a forward and backward pass of 32 comparisons of ``RLHF-Describe-v1`` (the task's own
reward model and comparisons, shipped, so nothing is downloaded); the two ways take turns and the median of each is
reported.

    python -m rlhf_gym.benchmarks.reward_tokenizing              # wall time, torch's threads
    python -m rlhf_gym.benchmarks.reward_tokenizing --cpu-time   # CPU time of one thread: for cores other jobs share
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from rlhf_gym.reward_model import RewardModel, bradley_terry_loss
from rlhf_gym.tasks import load_task

from .clock import alternate

BATCH_SIZE = 32
"""Comparisons per step: :class:`rlhf_gym.reward_settings.RewardTrainingConfig`'s default."""


def time_training_step(task: str = "describe_v1", rounds: int = 3, repeats: int = 20,
                       timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds (of ``timer``) of one step, ``"in the step"`` (texts) and ``"once"`` (ids); raises if the two
    score the batch differently."""
    loaded = load_task(task)
    reward_model = RewardModel.from_pretrained(loaded.reward_dir)
    reward_model.model.train()
    batch = loaded.reward_model_split()[0][:BATCH_SIZE]
    prompts = [r["prompt"] for r in batch] * 2
    responses = [r["chosen"] for r in batch] + [r["rejected"] for r in batch]
    tokenized = reward_model.tokenize(prompts, responses)
    if not torch.equal(reward_model.forward(prompts, responses), reward_model.forward_tokenized(tokenized)):
        raise AssertionError("the pre-tokenized step scores the comparisons differently")

    def step(scores: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            reward_model.model.zero_grad(set_to_none=True)
            r = scores()
            bradley_terry_loss(r[:BATCH_SIZE], r[BATCH_SIZE:]).backward()
        return call

    return alternate({"in the step": step(lambda: reward_model.forward(prompts, responses)),
                      "once": step(lambda: reward_model.forward_tokenized(tokenized))}, rounds, repeats, timer)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A reward-model training step: texts tokenized in it or once before.")
    parser.add_argument("--cpu-time", action="store_true", help="time this process's CPU time on one thread")
    args = parser.parse_args()
    if args.cpu_time:
        torch.set_num_threads(1)
    times = time_training_step(timer=time.process_time if args.cpu_time else time.perf_counter)
    each, once = times["in the step"], times["once"]
    print(f"reward-model step, 32 comparisons ({'CPU' if args.cpu_time else 'wall'} time, {torch.get_num_threads()} "
          f"thread(s)): texts tokenized in the step {each * 1e3:.1f} ms, tokenized once {once * 1e3:.1f} ms "
          f"({once / each - 1:+.0%})")
