"""What each PPO iteration actually processed: live response tokens and tokens through the update.

On a workload whose responses end at a stop token both vary from one iteration to the next, so a system counts them
(not the workload's full-length shape): the live length of a response counts its tokens up to and including the stop
token; the update's tokens are ``batch x (prompt + response columns)`` of every sequence forward with gradients,
summed over the iteration's minibatches and epochs. The :class:`rlhf_gym.benchmarks.protocol.Run` reports their means over the
timed iterations, and every iteration's record (in the JSON) gets its own values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .protocol import Run


class TokenTally:
    """Per PPO iteration: the live length of each sampled response and the tokens through the update."""

    def __init__(self) -> None:
        self.response_lengths: list[list[int]] = []  # one list per rollout: each response's live tokens
        self.update_tokens: list[int] = []  # one count per rollout: the tokens of the update that follows it

    def rollout(self, lengths: Sequence[int]) -> None:
        """A rollout ended with responses of these live lengths; the update tokens counted next are its update's."""
        self.response_lengths.append([int(length) for length in lengths])
        self.update_tokens.append(0)

    def update(self, sequences: int, tokens_per_sequence: int) -> None:
        """One forward with gradients over ``sequences`` sequences of ``tokens_per_sequence`` columns each."""
        self.update_tokens[-1] += sequences * tokens_per_sequence

    def run(self, iterations: list[dict[str, float]], trainable_parameters: int, warmup: int, **memory: float) -> Run:
        """The :class:`Run` of these iterations (the clock's records, one per rollout, in order); the means are over
        the iterations after the ``warmup`` ones; ``memory``: :class:`Run`'s ``weights_mb`` and ``training_state_mb``."""
        if len(iterations) != len(self.response_lengths):
            raise RuntimeError(f"{len(iterations)} timed iterations but {len(self.response_lengths)} rollouts counted")
        for record, lengths, tokens in zip(iterations, self.response_lengths, self.update_tokens):
            record["mean_response_length"], record["update_tokens"] = float(np.mean(lengths)), tokens
        timed = iterations[warmup:]
        return Run(iterations, trainable_parameters, float(np.mean([r["mean_response_length"] for r in timed])),
                   round(float(np.mean([r["update_tokens"] for r in timed]))), **memory)
