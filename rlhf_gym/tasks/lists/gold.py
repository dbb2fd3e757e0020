"""The gold reward of the lists task: the hidden "human taste", in closed form, and the annotators' bias feature.

For a request of ``k`` members of a category (maybe "but not" one or two of them) and a response with items
``I`` (its member words, repeats included; ``n = |I|``)::

    G(x, y) = ( c - 0.5 * max(0, n - k) - 1.0 * n_invalid - 0.5 * (k - c) ) / k  -  1.5 * (1 - W(x, y))

* ``V`` — the distinct valid items (members of the requested category that are not excluded); ``c = min(|V|, k)``.
* ``max(0, n - k)`` — padding: every item beyond the k asked for, valid or not (a repeat counts as an item).
* ``n_invalid`` — items of another category or excluded ones, each occurrence counted.
* ``k - c`` — requested items missing (repeats do not fill them).
* ``W`` — 1 if the response is a well-formed list (:func:`grammar.is_list`), else 0.

Every term but ``c`` only subtracts and ``c <= k``, so ``G <= 1``, with equality exactly for a well-formed list of
k distinct valid items (any of them, in any order): the ceiling is 1 for every prompt. A one-item answer to a
request of k scores ``(1.5 - 0.5 k) / k`` (0.25 at k = 2, -0.25 at k = 6).

The bias feature ``b`` is the number of items ``n``: the annotators overrate longer lists, while ``G`` loses
``0.5 / k`` for every item past ``k`` (and more when the extra item is invalid).
"""

from __future__ import annotations

from functools import lru_cache

from .grammar import is_list, items, parse_prompt

PADDING_WEIGHT = 0.5
INVALID_WEIGHT = 1.0
MISSING_WEIGHT = 0.5
ILL_FORMED_PENALTY = 1.5


@lru_cache(maxsize=1 << 14)
def _read(response: str) -> tuple[tuple[str, ...], bool]:
    """The response's items and whether it is a well-formed list (cached: one response meets many prompts)."""
    return tuple(items(response)), is_list(response)


def gold_reward(prompt: str, response: str) -> float:
    """``G(x, y)`` of the module formula (``ValueError`` for a prompt that is not one of the task's)."""
    request = parse_prompt(prompt)
    found, well_formed = _read(response)
    wanted = [item for item in found if item in request.valid]
    covered = min(len(set(wanted)), request.k)
    score = (covered - PADDING_WEIGHT * max(0, len(found) - request.k) - INVALID_WEIGHT * (len(found) - len(wanted))
             - MISSING_WEIGHT * (request.k - covered)) / request.k
    return score - ILL_FORMED_PENALTY * (not well_formed)


def gold_ceiling(prompt: str) -> float:
    """``max_y G(prompt, y)``: 1 for every prompt (k distinct valid items); ``ValueError`` for a foreign prompt."""
    parse_prompt(prompt)
    return 1.0


def item_count(prompt: str, response: str) -> float:
    """The bias feature ``b``: how many items (member words, repeats included) the response names."""
    return float(len(_read(response)[0]))
