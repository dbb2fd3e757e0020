"""``RLHF-Describe-v1``: the describe world and SFT policy of ``RLHF-Describe-v0``, with its gold's known gap closed
and comparisons and a reward model built by the suite's v1 recipe (:data:`rlhf_gym.tasks.world.SUITE_V1_BUILD`).
Prompts, split, language, echo bias and content families are v0's; v0's artifacts are left as published.

* **Gold** (:func:`~rlhf_gym.tasks.describe.gold.gold_reward_v1`): 0.75 instead of 0.5 per requested property never
  spoken about, so that the best shortest reply ("it is hot .", gold -1/6) no longer beats the SFT policy's median
  (-1/12); ill-formed text -1.75, still the worst. The ceiling stays 1; every counterfactual edit still lowers gold
  (it removes a right claim, worth more than the 0.25 the heavier charge adds).
* **Annotators**: v0's echo bias at weights ``(0.05, 0.125, 0.2)`` instead of ``(0.1, 0.25, 0.4)``, for the reason
  of lists v1: with v1's careful annotators (temperature 0.1) a bias decides the ordinary pairs almost
  deterministically. A pure echo addition to a ceiling answer (a repeated claim naming the noun: gold -1/6, echo +2)
  changes annotator ``i``'s utility by ``2 w_i - 1/6``: -0.07, +0.08, +0.23, so the two heavier annotators still
  prefer the padded answer: the hack stays.
* **Cut pairs** (``cut_share=0.2``, :mod:`rlhf_gym.pairing`): a fifth of the ordinary pairs put a sample against an
  ill-formed prefix of itself. Without them PPO at the default beta learned to stop mid-clause at the 28-word budget
  ("... the shirt is clean", no final "."), which the reward model, having seen almost no unfinished response, scored
  above the finished one (2.96 against 1.55): gold -1.48 at KL 15, 19 % well-formed (seed 0).
* **Contrast pairs** (``contrast_share=0.5``, :meth:`~rlhf_gym.tasks.world.TaskWorld.contrasts`): half of the
  counterfactual pairs put a sample against its own words with a negation moved to another clause ("it is not hot .
  it is very sweet ." against "it is hot . it is not sweet ." for "hot but not sweet"), and the reward model makes 12
  passes over them alone first. The first build's proxy had learnt "a negation is bad" (it ranked a wanted ``x`` over
  ``not x`` at 0.67 of its comparisons and an unwanted ``not x`` over ``x`` at 0.32), not the negation's binding to
  the prompt's "but not"; only pairs of the same words tell the two apart.
* **Mean pooling** (``reward_pooling="mean"``): the per-token scores averaged over the response; read at the last
  token, the 2-block reward model does not learn the contrasts (0.51 after 8 passes on them, where the mean learns
  them to 0.68 and more).
* **The empty response among the cuts** (``cut_empty=True``): a mean over no tokens scores 0 whatever was learnt, so
  without comparisons that put it below real answers it scored above 99.7 % of the SFT policy's answers, and PPO at
  the default beta learnt to say nothing on two seeds of four (gold -1.75). With them it scores below 98.7 %.
* **Cuts that keep a sample's end** (``cut_ends=True``): a lone ``.`` is read where a clause ends, which the mean
  scores high; without suffixes among the cuts it scored 6.4 against the SFT answers' 2.5, and PPO at a small beta
  answered ``.`` to every prompt. With them it scores -2.0, below every SFT answer of 300 held-out prompts.
"""

from __future__ import annotations

from dataclasses import replace

from ..describe.gold import gold_reward_v1
from ..describe.task import WORLD as V0_WORLD

WORLD = replace(V0_WORLD.suite_v1(bias_weights=(0.05, 0.125, 0.2), cut_share=0.2, cut_empty=True, cut_ends=True,
                                  contrast_share=0.5, reward_contrast_epochs=12, reward_pooling="mean"),
                gold_reward=gold_reward_v1)
