"""rlhf_gym.statistics: the 95 % Student-t interval of a mean over seeds, by hand; the letter display and the longest
chain of pairwise-apart intervals, by hand and against brute force."""

import itertools
import math
import random

import pytest

from rlhf_gym.statistics import Interval, letter_groups, mean_interval, separated_chain, t_quantile


def test_the_interval_by_hand():
    # values 1, 2, 3, 4, 5: mean 3, sample std sqrt(2.5), t_{0.975,4} = 2.776 -> 2.776 * sqrt(2.5) / sqrt(5) = 1.96293
    interval = mean_interval([1, 2, 3, 4, 5])
    assert interval.mean == 3 and interval.n == 5
    assert interval.half_width == pytest.approx(2.776 * math.sqrt(0.5), abs=1e-12)
    assert (interval.low, interval.high) == pytest.approx((3 - 1.96293, 3 + 1.96293), abs=1e-5)
    assert interval.format() == "3.000 ± 1.963"
    # two values: t_{0.975,1} = 12.706, s = |a - b| / sqrt 2, half-width = 12.706 * |a - b| / 2
    assert mean_interval([1.0, 2.0]).half_width == pytest.approx(12.706 * 0.5)


def test_the_quantiles():
    assert [t_quantile(df) for df in (1, 4, 9, 30, 31, 1000)] == [12.706, 2.776, 2.262, 2.042, 1.96, 1.96]
    with pytest.raises(ValueError, match="at least 1 degree of freedom"):
        t_quantile(0)


def test_one_value_and_bad_values():
    single = mean_interval([1.25])
    assert single.mean == 1.25 and math.isnan(single.half_width) and single.format() == "1.250"
    with pytest.raises(ValueError, match="no values"):
        mean_interval([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_interval([1.0, float("nan")])


def test_overlap_is_the_significance_rule():
    assert Interval(1.0, 0.1, 5).overlaps(Interval(1.2, 0.1, 5))  # they touch at 1.1
    assert not Interval(1.0, 0.1, 5).overlaps(Interval(1.21, 0.1, 5))
    assert not Interval(1.21, 0.1, 5).overlaps(Interval(1.0, 0.1, 5))


def spans(*pairs):
    """Intervals from ``(low, high)`` pairs."""
    return [Interval((low + high) / 2, (high - low) / 2, 5) for low, high in pairs]


def test_letters_by_hand():
    # a [9, 11], b [8.4, 8.6], c [5.4, 11.4], d [0, 1]: c overlaps a and b, a and b are apart, d is apart from all
    assert letter_groups(spans((9, 11), (8.4, 8.6), (5.4, 11.4), (0, 1))) == ["a", "b", "ab", "c"]
    # a chain of neighbours that overlap: [0, 2], [1, 3], [2.5, 4]; the first and the last are apart
    assert letter_groups(spans((2.5, 4), (1, 3), (0, 2))) == ["a", "ab", "b"]
    assert letter_groups(spans((0, 1), (0, 1))) == ["a", "a"] and letter_groups([]) == []


def test_the_longest_separated_chain_by_hand():
    # a and b are apart, c overlaps both, d is apart from every other: a > b > d, three levels
    assert separated_chain(spans((9, 11), (8.4, 8.6), (5.4, 11.4), (0, 1))) == [0, 1, 3]
    assert separated_chain(spans((2.5, 4), (1, 3), (0, 2))) == [0, 2]
    assert separated_chain(spans((0, 1), (0.5, 2))) == [0]  # any one of two overlapping intervals


def test_letters_and_chain_keep_every_pairwise_test_on_random_intervals():
    rng = random.Random(0)
    for _ in range(300):
        intervals = spans(*((low, low + rng.uniform(0, 3)) for low in (rng.uniform(0, 10) for _ in range(rng.randint(1, 7)))))
        letters = letter_groups(intervals)
        for i, j in itertools.combinations(range(len(intervals)), 2):
            assert bool(set(letters[i]) & set(letters[j])) == intervals[i].overlaps(intervals[j])
        chain = separated_chain(intervals)
        assert all(not intervals[i].overlaps(intervals[j]) for i, j in itertools.combinations(chain, 2))
        assert [intervals[k].mean for k in chain] == sorted((intervals[k].mean for k in chain), reverse=True)
        longest = max(size for size in range(1, len(intervals) + 1) for subset in
                      itertools.combinations(intervals, size) if
                      all(not a.overlaps(b) for a, b in itertools.combinations(subset, 2)))
        assert len(chain) == longest
