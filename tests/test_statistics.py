"""rlhf_gym.statistics: the 95 % Student-t interval of a mean over seeds, by hand."""

import math

import pytest

from rlhf_gym.statistics import Interval, mean_interval, t_quantile


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
