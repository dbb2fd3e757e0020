"""The batched env's own cost per step (no policy) against one policy forward pass of the default model.

    rlhf-gym env-overhead --num-envs 64

Drives RLHFVectorEnv (autoreset disabled) with SFT-policy samples taken beforehand, so the env's time
(bookkeeping, observations, and the one reference pass + one reward-model pass when responses end) is
measured alone; then times one KV-cached policy step and one full-sequence policy forward on the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_gym.cli import arg


@dataclass
class Args:
    num_envs: int = arg(64, "rows of the batched env")
    repeats: int = arg(5, "episodes batches to time (the median is reported)")
    seed: int = arg(0, "seed")


def main(args: Args) -> None:
    from .env_overhead import measure  # torch only once the command runs: --help stays fast

    for line in measure(args.num_envs, args.repeats, args.seed).lines():
        print(line)
