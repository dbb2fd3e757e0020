"""Inter-annotator agreement on the pairs that two or more labelers judged."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping


def agreement(judgements: Mapping[int, Mapping[str, str]]) -> dict:
    """Raw agreement and Cohen's kappa, pooled over every two labelers who judged the same pair.

    Each such two (first and second in name order) adds one cell to a contingency table of labels;
    kappa is ``(p_o - p_e) / (1 - p_e)`` with the chance agreement ``p_e`` from the table's margins,
    which is exactly Cohen's kappa when there are two labelers.

    :param judgements: pair id -> {labeler: ``"a"``, ``"b"`` or ``"tie"``} (skips left out).
    :return: ``{"pairs", "comparisons", "rate", "cohen_kappa"}``; ``rate`` and ``cohen_kappa`` are
        ``None`` when no pair has two labels (kappa also when chance agreement is 1).
    """
    table: Counter[tuple[str, str]] = Counter()
    pairs = 0
    for by_labeler in judgements.values():
        if len(by_labeler) < 2:
            continue
        pairs += 1
        for (_, first), (_, second) in itertools.combinations(sorted(by_labeler.items()), 2):
            table[first, second] += 1
    n = sum(table.values())
    if n == 0:
        return {"pairs": 0, "comparisons": 0, "rate": None, "cohen_kappa": None}
    observed = sum(count for (first, second), count in table.items() if first == second) / n
    first_margin: Counter[str] = Counter()
    second_margin: Counter[str] = Counter()
    for (first, second), count in table.items():
        first_margin[first] += count
        second_margin[second] += count
    expected = sum(first_margin[label] * second_margin[label] for label in first_margin) / n**2
    kappa = None if math.isclose(expected, 1.0) else (observed - expected) / (1.0 - expected)
    return {"pairs": pairs, "comparisons": n, "rate": observed, "cohen_kappa": kappa}
