"""Length buckets for the update's forward pass: fewer padded tokens, the same result.

A minibatch of responses that end at different lengths is padded to its longest one: with the default task's
responses (3 to 24 tokens, 11.6 on average) about 40 % of the update's tokens are padding. Sorting the rows by length
and running the shortest and the longest ones as separate forward passes, each cut to its own longest response,
computes the same per-token log-probs, entropies and values (causal attention never lets right padding change a real
position) on fewer tokens. The losses are then taken over the reassembled minibatch as before, so the gradient and the
optimizer step are those of the whole minibatch (only the rounding differs). Each extra forward pass has a fixed cost,
so a bucket is split only when that removes a good share of its tokens, and small models on short budgets gain
nothing: it is off by default (:class:`rlhf_gym.agents.TransformerPolicy`'s ``max_length_buckets``), and PPO turns it on
for long budgets (:data:`LONG_BUDGET_BUCKETS`).
"""

from __future__ import annotations

import torch

LONG_BUDGET_BUCKETS = 4
"""PPO's update runs in up to this many buckets when the response budget is long
(:func:`rlhf_gym.generation.long_budget`), unless ``policy_kwargs`` set ``max_length_buckets``: on the ``long-128`` and
``long-256`` workloads of ``docs/benchmarks.md``, 4 buckets cut the update by a third or more."""
MIN_SAVING = 0.2
"""Split a bucket in two only when that removes at least this share of its tokens (each forward pass has a fixed cost)."""


def length_buckets(lengths: torch.Tensor, prompt_len: int, max_buckets: int = 4,
                   min_saving: float = MIN_SAVING) -> list[torch.Tensor]:
    """Row indices of each bucket: the rows sorted by ``lengths`` [B] and cut in halves, the cut that saves the most
    tokens (``rows * (prompt_len + longest)`` per bucket) first, while it saves ``min_saving`` of its bucket's tokens,
    into at most ``max_buckets``. One bucket of every row, in order, when no cut pays."""
    # bucketing off, a single row, or every row as long as the longest: there is no padding to cut
    if max_buckets <= 1 or lengths.numel() < 2 or bool((lengths == lengths.max()).all()):
        return [torch.arange(lengths.numel(), device=lengths.device)]

    # the cost model: a bucket's forward pass pads every row to the bucket's longest response, behind the prompt width
    def tokens(rows: torch.Tensor) -> int:
        return len(rows) * (prompt_len + int(lengths[rows[-1]]))  # sorted: the last row is the longest

    # always at the middle row (rows sorted by length: the short half and the long half), which keeps the passes'
    # batch sizes even
    def saving(rows: torch.Tensor) -> int:
        half = len(rows) // 2
        return tokens(rows) - tokens(rows[:half]) - tokens(rows[half:]) if half else 0

    buckets = [torch.argsort(lengths, stable=True)]  # stable: rows of equal length keep their order (deterministic)
    while len(buckets) < max_buckets:
        # greedy: split the bucket whose split saves the most; stop when even that one would not pay for its extra pass
        best = max(range(len(buckets)), key=lambda i: saving(buckets[i]))
        rows = buckets[best]
        if saving(rows) < min_saving * tokens(rows):
            break
        buckets[best:best + 1] = [rows[:len(rows) // 2], rows[len(rows) // 2:]]
    return buckets
