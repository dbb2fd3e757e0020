"""Means over seeds with a 95 % confidence interval (Student's t), as every published table of rlhf-gym reports them.

No NumPy or SciPy: the t quantiles are the standard table values ``t_{0.975, df}`` (df = n - 1), and the interval is
``mean ± t * s / sqrt(n)`` with ``s`` the sample standard deviation (``ddof = 1``). Two means differ significantly in
the tables' sense when their intervals do not overlap (a conservative test: it needs more than a 5 % level); a
compact letter display (:func:`letter_groups`) and the longest chain of pairwise-apart intervals
(:func:`separated_chain`) summarise all those pairwise tests at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .metrics import format_number

CONFIDENCE = 0.95
# t_{0.975, df} for df = 1 .. 30 (any statistics table); past 30 the normal quantile 1.96 is within 2 % of it
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
          2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z_975 = 1.960
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # the letters of letter_groups, best first


def t_quantile(df: int) -> float:
    """``t_{0.975, df}``, the two-sided 95 % quantile of Student's t with ``df >= 1`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom (2 values), got {df}")
    return _T_975[df - 1] if df <= len(_T_975) else _Z_975


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and the half-width of its 95 % confidence interval (NaN for a single value)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share a point (then the tables call the difference not significant)."""
        return not (self.high < other.low or other.high < self.low)

    def format(self, digits: int = 3) -> str:
        """``"1.246 ± 0.047"``, or the mean alone for a single value (:func:`rlhf_gym.metrics.format_number`)."""
        if self.n < 2:
            return format_number(self.mean, digits)
        return f"{format_number(self.mean, digits)} ± {format_number(self.half_width, digits)}"


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` with its 95 % Student-t interval; ``ValueError`` for no values or a non-finite one."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to average")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"non-finite value among {values}")
    n, mean = len(values), sum(values) / len(values)
    if n == 1:
        return Interval(mean, math.nan, 1)
    sample_std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, t_quantile(n - 1) * sample_std / math.sqrt(n), n)


def letter_groups(intervals: Sequence[Interval]) -> list[str]:
    """A compact letter display of ``intervals`` under the tables' test (Piepho 2004, "An algorithm for a letter-based
    representation of all-pairwise comparisons"): two intervals share a letter exactly when they overlap, so two means
    with no letter in common differ significantly.

    Each letter is a maximal set of pairwise-overlapping intervals. In one dimension pairwise-overlapping intervals
    share a common point (Helly's theorem): their common part starts at the highest of their lower ends. So the
    candidate sets are the intervals containing each lower end; the maximal ones are the letters, "a" for the highest.
    """
    lower_ends = sorted({interval.low for interval in intervals}, reverse=True)
    candidates = [frozenset(k for k, interval in enumerate(intervals) if interval.low <= point <= interval.high)
                  for point in lower_ends]
    # distinct lower ends give distinct sets (each holds the interval starting at its point, which no lower point's does)
    groups = [group for group in candidates if not any(group < other for other in candidates)]
    if len(groups) > len(_LETTERS):
        raise ValueError(f"{len(groups)} letter groups; a letter display has at most {len(_LETTERS)}")
    return ["".join(_LETTERS[g] for g, group in enumerate(groups) if k in group) for k in range(len(intervals))]


def separated_chain(intervals: Sequence[Interval]) -> list[int]:
    """The indices of the longest chain of intervals that are pairwise apart (no two overlap), highest first: the most
    levels the means can be ranked into with every step significant.

    Greedy interval scheduling, which is optimal: take the interval that ends lowest, then repeatedly the one ending
    lowest among those starting above the last one taken.
    """
    chain: list[int] = []
    for k in sorted(range(len(intervals)), key=lambda k: intervals[k].high):
        if not chain or intervals[k].low > intervals[chain[-1]].high:
            chain.append(k)
    return chain[::-1]


def mean_and_half_width(values: Sequence[float]) -> tuple[float, float | None] | None:
    """``(mean, half-width of its 95 % interval)`` of ``values`` (half-width None for one value: JSON's null), None for
    none: the JSON form of :func:`mean_interval`, which :func:`plus_half_width` formats."""
    if not values:
        return None
    interval = mean_interval(values)
    return interval.mean, None if interval.n < 2 else interval.half_width


def plus_half_width(value: tuple[float, float | None] | None, digits: int = 3) -> str:
    """``"mean ± half-width"`` of a ``(mean, half-width)`` pair, the mean alone without a half-width (one value), ``—``
    for no pair: the tables' cell for a mean over seeds or draws."""
    if value is None:
        return "—"
    mean, half_width = value
    if half_width is None:
        return format_number(mean, digits)
    return f"{format_number(mean, digits)} ± {format_number(half_width, digits)}"
