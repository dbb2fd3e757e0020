"""Simulated annotators with a bias, and the pool that draws one per pair (AlpacaFarm's annotator variability)."""

import math

import pytest

from rlhf_gym.errors import ConfigError
from rlhf_gym.labelers import AnnotatorPool, SimulatedAnnotator


def gold(prompt: str, response: str) -> float:
    return 1.0 if "good" in response.split() else 0.0


def length(prompt: str, response: str) -> float:
    return float(len(response.split()))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_a_biased_annotator_judges_by_gold_plus_weighted_bias():
    annotator = SimulatedAnnotator(gold, temperature=0.5, flip_rate=0.0, bias=length, bias_weight=0.25)
    assert annotator.utility("x", "good") == 1.25
    assert annotator.utility("x", "so so so so so") == 1.25
    # U(a) - U(b) = (1 + 0.25) - (0 + 0.25 * 3) = 0.5, over the temperature 0.5
    assert annotator.preference_probability("x", "good", "bad bad bad") == pytest.approx(sigmoid(1.0))
    unbiased = SimulatedAnnotator(gold, temperature=0.5, flip_rate=0.0)
    assert unbiased.preference_probability("x", "good", "bad bad bad") == pytest.approx(sigmoid(2.0))


def test_bias_that_outweighs_gold_flips_the_preference():
    annotator = SimulatedAnnotator(gold, temperature=0.1, flip_rate=0.0, bias=length, bias_weight=1.0)
    labels = [annotator("x", "good", "bad bad bad") for _ in range(200)]
    assert labels.count("b") > 190  # 1 + 1 < 0 + 3: the long wrong answer wins


@pytest.mark.parametrize("kwargs, message", [
    ({"bias_weight": 0.5}, "needs a bias feature"),
    ({"bias": length, "bias_weight": math.nan}, "must be finite"),
])
def test_bad_bias_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SimulatedAnnotator(gold, **kwargs)


def test_a_pool_draws_its_member_per_pair_reproducibly():
    pool = AnnotatorPool(gold, length, (0.0, 0.5, 1.0), temperature=0.5, flip_rate=0.1, seed=3)
    drawn = []
    for pair_id in range(300):
        pool.seed_pair(pair_id)
        drawn.append(pool.current.bias_weight)
    assert set(drawn) == {0.0, 0.5, 1.0} and all(drawn.count(w) > 70 for w in (0.0, 0.5, 1.0))
    again = AnnotatorPool(gold, length, (0.0, 0.5, 1.0), temperature=0.5, flip_rate=0.1, seed=3)
    for pair_id in (299, 7, 150):  # any order: a resumed collection labels as an uninterrupted one
        again.seed_pair(pair_id)
        pool.seed_pair(pair_id)
        assert again.current.bias_weight == drawn[pair_id]
        assert again("x", "good", "bad bad") == pool("x", "good", "bad bad")


def test_a_pool_labels_as_its_drawn_member_would():
    pool = AnnotatorPool(gold, length, (0.0, 2.0), temperature=0.05, flip_rate=0.0, seed=0)
    for pair_id in range(50):
        pool.seed_pair(pair_id)
        # member w=0 prefers gold ("good"); member w=2 prefers the longer reply (0 + 2*3 > 1 + 2*1)
        assert pool("x", "good", "bad bad bad") == ("a" if pool.current.bias_weight == 0.0 else "b")


def test_a_pool_s_preference_probability_is_its_members_mean():
    pool = AnnotatorPool(gold, length, (0.0, 1.0), temperature=1.0, flip_rate=0.0)
    # member 0: sigmoid(1 - 0); member 1: sigmoid((1 + 1) - (0 + 2))
    assert pool.preference_probability("x", "good", "bad bad") == pytest.approx((sigmoid(1.0) + 0.5) / 2)


def test_an_empty_pool_is_refused():
    with pytest.raises(ConfigError, match="at least one member"):
        AnnotatorPool(gold, length, ())
