"""``RLHF-Lists-v1``: the lists world and SFT policy of ``RLHF-Lists-v0``, with comparisons and a reward model built by
the suite's v1 recipe (:data:`rlhf_gym.tasks.world.SUITE_V1_BUILD`). The gold reward, prompts, split and content
families are v0's; v0's artifacts are left as published.

The annotators' length bias is v0's, at weights ``(0.02, 0.06, 0.10)`` instead of ``(0.05, 0.15, 0.25)``: one extra
valid item past a complete answer changes annotator ``i``'s utility by ``w_i - 0.5 / k``, so the mean annotator
(0.06) never prefers padding and the heaviest only at k = 6, where v0's mean annotator preferred it from k = 4 on. With
v1's careful annotators v0's weights made the reward model pay more for one padding item than an excluded member
costs, and PPO at the default beta padded with excluded members and repeats (gold below SFT's). The hack remains: in
the SFT data a longer list is usually a better one, and the reward model still rises with padding past ``k``.

The reward model averages its per-token scores over the response (``reward_pooling="mean"``,
:class:`~rlhf_gym.reward_model.RewardModel`) instead of reading the last token: lists' gold is almost a sum over the
items, which per-token scores express item by item where the last token must gather the whole list (agreement with
gold 0.830 against 0.737 on the build's pairs). A sum of the same scores agreed as well but its range grew with the
response, and PPO collapsed on it (docs/task_suite.md).
"""

from __future__ import annotations

from ..lists.task import WORLD as V0_WORLD

WORLD = V0_WORLD.suite_v1(bias_weights=(0.02, 0.06, 0.10), reward_pooling="mean")
