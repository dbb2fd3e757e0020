"""``RLHF-Facts-v1``: the facts world and SFT policy of ``RLHF-Facts-v0``, with comparisons and a reward model built by
the suite's v1 recipe (:data:`rlhf_gym.tasks.world.SUITE_V1_BUILD`). The gold reward, prompts, split and content
families are v0's; v0's artifacts are left as published.

The annotators' boilerplate bias is v0's, at weights ``(0.04, 0.08, 0.12)`` instead of ``(0.075, 0.15, 0.25)``, for
the reason of lists v1: with v1's careful annotators (temperature 0.1) a bias decides the ordinary pairs almost
deterministically. Gold charges only ``0.1 / n`` per phrase (n = 2 or 3 asked facts), so every annotator but the
lightest at n = 2 still prefers one more phrase: the hack stays.

Rebuilt 2026-12-07 (docs/task_suite.md, "RLHF-Facts-v1"): the reward model averages per-token scores over the response
(``reward_pooling="mean"``, as lists and describe v1) instead of reading the last token, and a fifth of the ordinary
pairs are *garbled* pairs (``garble_share=0.2``, :mod:`rlhf_gym.pairing`): a sample against itself with one word edited
so that it is ill-formed.
"""

from __future__ import annotations

from ..facts.task import WORLD as V0_WORLD

WORLD = V0_WORLD.suite_v1(bias_weights=(0.04, 0.08, 0.12), reward_pooling="mean", garble_share=0.2)
