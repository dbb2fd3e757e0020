"""Pinned maths of the task side: the Gao fits, the normalised score, the task gold rewards and the annotators.

Each expected value is worked out by hand in a comment (issue 30: these tests kill the mutants that the older tests let
survive; CONTRIBUTING.md, "Mutation testing").
"""

import json
import math

import numpy as np
import pytest

from rlhf_gym.labelers import AnnotatorPool, SimulatedAnnotator
from rlhf_gym.studies import leaderboard
from rlhf_gym.studies.analysis.gao import GaoFit, fit_gao, gao_best_of_n, gao_rl
from rlhf_gym.tasks.base import Task
from rlhf_gym.tasks.facts.gold import boilerplate_count
from rlhf_gym.tasks.facts.gold import gold_reward as facts_gold


# ------------------------------------------------------------------------------------------------ Gao fits
def test_best_of_n_fit_of_an_inexact_curve_by_hand():
    # d = 1, 2, 3 (KL 1, 4, 9); features (d, -d^2): X = [[1, -1], [2, -4], [3, -9]], y = (0.1, 0.2, 0)
    # X^T X = [[14, -36], [-36, 98]] (det 76), X^T y = (0.5, -0.9): alpha = (98 * 0.5 - 36 * 0.9) / 76 = 83/380,
    # b = (36 * 0.5 - 14 * 0.9) / 76 = 27/380; fitted (56, 58, 6)/380, residuals (-18, 18, -6)/380:
    # SS_res = 684/380^2, SS_tot = 0.02 (about the mean 0.1; below 1, as most gains are), R^2 = 1 - 9/38 = 29/38
    fit = fit_gao(np.array([1.0, 4.0, 9.0]), np.array([0.1, 0.2, 0.0]), form="best_of_n")
    assert fit.alpha == pytest.approx(83 / 380, abs=1e-12) and fit.b == pytest.approx(27 / 380, abs=1e-12)
    assert fit.r2 == pytest.approx(29 / 38, abs=1e-12)
    assert fit.n_points == 3 and fit.form == "best_of_n"
    np.testing.assert_allclose(fit.predict(np.array([1.0, 2.0, 3.0])), np.array([56, 58, 6]) / 380, atol=1e-12)
    # the peak of d (alpha - b d) is alpha / (2 b) = 83/54, at KL (83/54)^2
    assert fit.as_dict() == pytest.approx({"alpha": 83 / 380, "b": 27 / 380, "r2": 29 / 38, "n_points": 3,
                                           "form": "best_of_n", "peak_d": 83 / 54, "peak_kl": (83 / 54) ** 2}, abs=1e-12)


def test_a_negative_kl_is_read_as_zero():
    # a KL estimate below 0 (noise) is d = 0: a row of zero features, which leaves the least-squares solution as it is
    fit = fit_gao(np.array([-0.3, 1.0, 4.0, 9.0]), np.array([0.0, 0.1, 0.2, 0.0]), form="best_of_n")
    assert fit.alpha == pytest.approx(83 / 380, abs=1e-12) and fit.b == pytest.approx(27 / 380, abs=1e-12)
    assert fit.n_points == 4
    # R^2 about the new mean 0.075: SS_tot = 0.075^2 + 0.025^2 + 0.125^2 + 0.075^2 = 0.0275, same SS_res
    assert fit.r2 == pytest.approx(1 - (684 / 380 ** 2) / 0.0275, abs=1e-12)


def test_a_flat_gain_has_no_r2_and_an_unfitted_form_has_no_peak():
    fit = fit_gao(np.array([1.0, 4.0, 9.0]), np.array([0.5, 0.5, 0.5]), form="rl")
    assert math.isnan(fit.r2)  # SS_tot = 0: R^2 is undefined (not a division by zero)
    no_peak = GaoFit(alpha=1.0, b=-0.5, r2=1.0, n_points=3, form="rl")
    assert no_peak.as_dict() == {"alpha": 1.0, "b": -0.5, "r2": 1.0, "n_points": 3, "form": "rl", "peak_d": None,
                                 "peak_kl": None}


def test_float32_kl_estimates_are_fitted_and_evaluated_in_float64():
    # KL estimates often come from torch as float32: the fit and the curves work in float64 all the same (float32
    # features would be off by ~1e-8)
    kl, gain = np.array([0.5, 2.0, 3.0, 5.0], dtype=np.float32), np.array([0.1, 0.2, 0.15, 0.0], dtype=np.float32)
    single, double = fit_gao(kl, gain, form="rl"), fit_gao(kl.astype(np.float64), gain.astype(np.float64), form="rl")
    assert (single.alpha, single.b, single.r2) == pytest.approx((double.alpha, double.b, double.r2), abs=1e-12, rel=0)
    d = np.array([0.3, 2.0], dtype=np.float32)
    for curve in (gao_rl, gao_best_of_n, single.predict):
        args = () if curve == single.predict else (1.5, 0.4)
        np.testing.assert_allclose(curve(d, *args), curve(d.astype(np.float64), *args), rtol=1e-13, atol=0)


# ------------------------------------------------------------------------------------------ normalised score
def tiny_task(tmp_path, sft=None, ceiling=None, gold=None, well_formed=None) -> Task:
    if sft is not None:
        (tmp_path / "metadata.json").write_text(json.dumps({"sft": {"gold_reward_mean": sft}}))
    return Task("tiny", tmp_path, [], [], gold_reward=gold, is_well_formed=well_formed, gold_ceiling=ceiling)


def test_normalised_score_by_hand(tmp_path):
    ceilings = {"a": 1.0, "b": 0.5}
    task = tiny_task(tmp_path, sft=0.25, ceiling=ceilings.get)
    # mean ceiling over the prompts (1 + 0.5) / 2 = 0.75: (0.6 - 0.25) / (0.75 - 0.25) = 0.7
    assert task.normalised_score(["a", "b"], 0.6) == pytest.approx(0.7, abs=1e-12)
    # over prompt "b" alone the ceiling is 0.5: (0.6 - 0.25) / (0.5 - 0.25) = 1.4 (above the SFT policy's ceiling share)
    assert task.normalised_score(["b"], 0.6) == pytest.approx(1.4, abs=1e-12)
    assert task.normalised_score(["a", "b"], 0.25) == 0.0 and task.normalised_score(["a", "b"], 0.0) == pytest.approx(-0.5)


def test_normalised_score_needs_a_ceiling_and_the_sft_figure(tmp_path):
    with_sft, bare, empty = tmp_path / "sft", tmp_path / "bare", tmp_path / "empty"
    for directory in (with_sft, bare, empty):
        directory.mkdir()
    assert tiny_task(with_sft, sft=0.25).normalised_score(["a"], 0.6) is None  # no ceiling
    assert tiny_task(bare, ceiling=lambda prompt: 1.0).normalised_score(["a"], 0.6) is None  # no metadata.json
    (empty / "metadata.json").write_text(json.dumps({"sft": {}}))
    assert tiny_task(empty, ceiling=lambda prompt: 1.0).normalised_score(["a"], 0.6) is None  # no SFT figure


def test_gold_scores_score_each_pair(tmp_path):
    # both functions read the prompt: gold = len(prompt) - len(response), well-formed = starts with the prompt's letter
    task = tiny_task(tmp_path, gold=lambda p, r: len(p) - len(r), well_formed=lambda p, r: r.startswith(p[0]))
    scores = task.gold_scores(["ab", "abc"], ["x.", "xyz"])
    np.testing.assert_array_equal(scores["gold_reward"], [0, 0])
    np.testing.assert_array_equal(scores["well_formed"], [0.0, 0.0])
    scores = task.gold_scores(["abcd", "a"], ["a.", "xyz"])
    np.testing.assert_array_equal(scores["gold_reward"], [2, -2])
    np.testing.assert_array_equal(scores["well_formed"], [1.0, 0.0])
    assert scores["well_formed"].dtype == np.float64 and set(scores) == {"gold_reward", "well_formed"}


# ------------------------------------------------------------------------------------------------ annotators
def prompt_gold(prompt: str, response: str) -> float:
    """Longer is better after the prompt "long", shorter after any other: a gold reward that reads its prompt."""
    return len(response) if prompt == "long" else -len(response)


def prompt_bias(prompt: str, response: str) -> float:
    return 1.0 if prompt in response else 0.0


def test_an_annotator_judges_under_the_pair_s_prompt():
    annotator = SimulatedAnnotator(prompt_gold, temperature=1.0, flip_rate=0.0, bias=prompt_bias, bias_weight=0.5)
    # U = G + 0.5 b: U("long", "long!") = 5 + 0.5, U("short", "long!") = -5
    assert annotator.utility("long", "long!") == 5.5 and annotator.utility("short", "long!") == -5.0
    # U("long", "aaa") - U("long", "a") = 2: sigmoid(2); under "short" the difference is -2
    assert annotator.preference_probability("long", "aaa", "a") == pytest.approx(1 / (1 + math.exp(-2)))
    assert annotator.preference_probability("short", "aaa", "a") == pytest.approx(1 / (1 + math.exp(2)))
    sharp = SimulatedAnnotator(prompt_gold, temperature=0.01, flip_rate=0.0)  # delta 200: a certain judge
    assert [sharp("long", "aaa", "a"), sharp("short", "aaa", "a")] == ["a", "b"]


def test_a_hopeless_response_keeps_a_tiny_but_exact_chance():
    annotator = SimulatedAnnotator(prompt_gold, temperature=1.0, flip_rate=0.0)
    # delta = -1000 is clipped to -50 (no overflow of exp(1000)): P = 1 / (1 + e^50)
    assert annotator.preference_probability("long", "a", "a" * 1001) == 1.0 / (1.0 + math.exp(50.0))


def test_a_flip_rate_of_one_always_flips():
    annotator = SimulatedAnnotator(prompt_gold, temperature=0.01, flip_rate=1.0)
    assert [annotator("long", "aaa", "a") for _ in range(5)] == ["b"] * 5  # the sure choice "a", flipped
    assert [annotator("long", "a", "aaa") for _ in range(5)] == ["a"] * 5


def test_a_pool_s_members_judge_the_pair_under_its_prompt():
    pool = AnnotatorPool(prompt_gold, None, [0.0, 0.0], temperature=1.0, flip_rate=0.0)
    # U("aaa") - U("a") = 2 under "long" and -2 under "short": sigmoid(2) and sigmoid(-2)
    assert pool.preference_probability("long", "aaa", "a") == pytest.approx(1 / (1 + math.exp(-2)))
    assert pool.preference_probability("short", "aaa", "a") == pytest.approx(1 / (1 + math.exp(2)))
    sharp = AnnotatorPool(prompt_gold, None, [0.0], temperature=0.01, flip_rate=0.0)
    sharp.seed_pair(0)
    assert [sharp("long", "aaa", "a"), sharp("short", "aaa", "a")] == ["a", "b"]


def test_a_pool_member_judges_each_pair_from_that_pair_s_own_stream():
    pool = AnnotatorPool(prompt_gold, None, [0.0], temperature=1.0, flip_rate=0.3, seed=5)
    alone = SimulatedAnnotator(prompt_gold, temperature=1.0, flip_rate=0.3, seed=5)
    pooled, single = [], []
    for pair_id in range(40):  # P(a) = 0.5 and flips: each label is two draws of the pair's stream
        pool.seed_pair(pair_id)
        alone.seed_pair(pair_id)
        pooled.append(pool("long", "ab", "cd"))
        single.append(alone("long", "ab", "cd"))
    assert pooled == single and 10 < pooled.count("a") < 30


# ------------------------------------------------------------------------------------------------ leaderboard
def test_the_suite_table_has_one_separator_cell_per_column():
    rows = {"RLHF-v0": [{"method": "ppo", "normalised_score": None, "gold_reward": (1.25, 0.02)}],
            "RLHF-Lists-v0": [{"method": "ppo", "normalised_score": (0.5, 0.125), "gold_reward": (0.3, 0.1)}]}
    assert leaderboard.suite_table(rows).splitlines()[1] == "|---|---|---|"  # method + two env ids
    assert leaderboard.suite_table({"RLHF-v0": rows["RLHF-v0"]}).splitlines()[1] == "|---|---|"


def test_aggregate_leaves_out_a_column_no_record_has_and_counts_a_kl_at_the_budget():
    records = [{"method": "ppo", "seed": seed, "gold_reward": gold, "kl": kl, "normalised_score": None}
               for seed, (gold, kl) in enumerate([(1.0, 10.0), (3.0, 10.5)])]
    (row,) = leaderboard.aggregate(records, kl_budget=10.0)
    assert row["normalised_score"] is None and row["proxy_reward"] is None  # None everywhere / absent: no mean
    assert row["gold_reward"] == pytest.approx((2.0, 12.706))  # sample std sqrt(2), t_{0.975, 1} = 12.706, n = 2
    assert row["headline"][0] == 1.0 and row["within_budget"] == 1  # KL 10.0 is within a budget of 10.0
    assert row["tier"] is None  # one seed within the budget: no interval to rank it by


# ---------------------------------------------------------------------------------------------- facts' bias
def test_boilerplate_is_counted_wherever_it_stands():
    # "trust me ," (an opener, 3 words) after a sentence and "i am sure ." (a closing, 4 words) at the end
    assert boilerplate_count("", "it eats fish . trust me , i am sure .") == 2.0
    assert boilerplate_count("", "it eats fish . clearly , it is red .") == 1.0
    assert boilerplate_count("", "it eats fish .") == 0.0


# ------------------------------------------------------------------------------------------------ facts' gold
FOX = "fox : orange small forests meat . tell me its colour , home and food :"
CEILING_FOX = "the fox is orange . it lives in forests . it eats meat ."


def test_an_unasked_fact_stated_twice_is_unasked_then_repeated():
    # size is given but not asked: -0.25 the first time, then a restatement (-0.5), whatever its value
    assert facts_gold(FOX, CEILING_FOX + " it is small . it is big .") == pytest.approx((3 - 0.25 - 0.5) / 3)
    assert facts_gold(FOX, CEILING_FOX + " it is small . it is small .") == pytest.approx((3 - 0.25 - 0.5) / 3)


def test_an_annotator_that_labels_ties_labels_equal_utilities_under_the_pair_s_prompt():
    tied = SimulatedAnnotator(prompt_gold, temperature=0.01, flip_rate=0.0, label_ties=True)
    assert tied("long", "ab", "cd") == "tie" and tied("short", "ab", "cd") == "tie"  # U = 2 and 2; -2 and -2
    assert tied("long", "abc", "d") == "a" and tied("short", "abc", "d") == "b"  # 3 - 1 = 2: no tie
    assert SimulatedAnnotator(prompt_gold, temperature=0.01, flip_rate=0.0)("long", "ab", "cd") in ("a", "b")  # a coin

    def close(prompt, response):  # utilities 1e-9 or 2e-9 apart
        return {"a": 1e-9, "b": 0.0, "c": 2e-9}[response]

    near = SimulatedAnnotator(close, temperature=1e-12, flip_rate=0.0, label_ties=True)
    assert near("x", "a", "b") == "tie"  # a difference of UTILITY_TIE itself is a tie
    assert near("x", "c", "b") == "a"
