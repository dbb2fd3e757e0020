"""Content-error families of the lists task: counterfactual edits that add one error and keep length, form and bias.

Every item occurrence of a response (its member words, :func:`grammar.items`) is exactly one of: an item of another
category, an excluded member, the first occurrence of a valid item (a member of the requested category that is not
excluded), or a *repeat* of a valid item already named. The content profile counts the three kinds of error::

    other_category   occurrences of members of another category                   (gold's n_invalid, first part)
    excluded_member  occurrences of the members the prompt excludes ("but not")    (gold's n_invalid, second part)
    repeated_item    valid occurrences beyond the first of each valid item         (gold: an item that fills no slot)

so ``other_category + excluded_member`` is gold's ``n_invalid`` and the distinct valid items ``|V|`` are the valid
occurrences minus ``repeated_item``. Repeats of an invalid item are not repeated_item errors: gold charges each such
occurrence as invalid already, and counting it twice would make one word two errors.

Every edit swaps one member word of the list for another member word, in the same place: the number of words and of
items (the annotators' bias ``b``, :func:`gold.item_count`) stay the same, and so does the list's form (the member
slots of :func:`grammar.is_list` accept any member word). The word it replaces is always a valid item named only once:
removing it moves no count of the profile (it is neither an error nor a repeat, and no other occurrence of it becomes
the first one), so the edit moves exactly its own family's count, by one. Examples on ``list three fruits but not
fig :`` and ``apple , pear and plum .`` (gold 1):

* other_category: ``apple , pear and plum .`` -> ``apple , oak and plum .`` (pear -> oak, a tree). Gold
  ``(2 - 1 - 0.5) / 3 = 1/6``.
* excluded_member: ``apple , pear and plum .`` -> ``apple , fig and plum .`` (pear -> fig, excluded). Gold ``1/6``.
  Needs a prompt with a "but not".
* repeated_item: ``apple , pear and plum .`` -> ``apple , pear and apple .`` (plum -> apple, named before it). Gold
  ``(2 - 0.5) / 3 = 1/2``.

Two gold terms: at a fixed number of items an invalid item takes the slot of a valid one, so an other_category or
excluded_member edit also loses a requested item (``k - c`` one higher) unless the list names more than ``k``
distinct valid items. That is not a second content error: "missing" is not a family, it is the count shortfall that
responses of different lengths differ by, and here it is the price of the error's slot; the family count is still
one well-defined property (occurrences of invalid items of that kind). Gold always drops, by ``1/k`` for the invalid
item and ``1.5/k`` more when the slot was needed. A repeat, by contrast, costs gold only through that slot: where
the list names more than ``k`` distinct valid items a repeat merely exchanges one padding item for another at equal
gold, so repeated_item has no place there (None); elsewhere gold drops by ``1.5/k``.
"""

from __future__ import annotations

import random
from collections import Counter

from .grammar import CATEGORIES, CATEGORY_OF, Request, is_well_formed, items, parse_prompt

OTHER_CATEGORY, EXCLUDED_MEMBER, REPEATED_ITEM = "other_category", "excluded_member", "repeated_item"
FAMILIES = (OTHER_CATEGORY, EXCLUDED_MEMBER, REPEATED_ITEM)


def content_profile(prompt: str, response: str) -> dict[str, int]:
    """``{family: count}`` of the module table (``ValueError`` for a prompt that is not one of the task's)."""
    request = parse_prompt(prompt)
    found = items(response)
    valid = [item for item in found if item in request.valid]
    return {OTHER_CATEGORY: sum(CATEGORY_OF[item] != request.category for item in found),
            EXCLUDED_MEMBER: sum(item in request.excluded for item in found),
            REPEATED_ITEM: len(valid) - len(set(valid))}


def _places(prompt: str, response: str) -> tuple[Request, list[str], list[int]] | None:
    """``(request, words, places)``: the word indices of the valid items named only once (the words an edit may
    replace), or None for an ill-formed response."""
    if not is_well_formed(prompt, response):
        return None
    request, words = parse_prompt(prompt), response.split()
    counts = Counter(items(response))
    # A well-formed list alternates member, separator, member, ..., member, ".": its items are the even indices
    # before the final full stop.
    places = [i for i in range(0, len(words) - 1, 2) if words[i] in request.valid and counts[words[i]] == 1]
    return request, words, places


def _replaced(words: list[str], index: int, word: str) -> str:
    return " ".join([*words[:index], word, *words[index + 1:]])


def add_other_category(prompt: str, response: str, rng: random.Random) -> str | None:
    """Replace a once-named valid item by a member of another category (``rng`` picks both); None without one."""
    found = _places(prompt, response)
    if found is None or not found[2]:
        return None
    request, words, places = found
    index = rng.choice(places)
    substitute = rng.choice([m for category, members in CATEGORIES.items() if category != request.category
                             for m in members])
    return _replaced(words, index, substitute)


def add_excluded_member(prompt: str, response: str, rng: random.Random) -> str | None:
    """Replace a once-named valid item by a member the prompt excludes (``rng`` picks both); None when the prompt
    excludes nothing or no valid item is named once."""
    found = _places(prompt, response)
    if found is None or not found[2] or not found[0].excluded:
        return None
    request, words, places = found
    return _replaced(words, rng.choice(places), rng.choice(request.excluded))


def add_repeated_item(prompt: str, response: str, rng: random.Random) -> str | None:
    """Replace a once-named valid item by another valid item named before it (``rng`` picks both); None when there
    is none, or when the list names more than k distinct valid items (a repeat would not cost gold there)."""
    found = _places(prompt, response)
    if found is None:
        return None
    request, words, places = found
    if len({item for item in items(response) if item in request.valid}) > request.k:
        return None
    # each place with the valid items named before it (all differ from the place's item: it is named only once)
    earlier = {i: list(dict.fromkeys(w for w in words[:i:2] if w in request.valid)) for i in places}
    candidates = [i for i in places if earlier[i]]
    if not candidates:
        return None
    index = rng.choice(candidates)
    return _replaced(words, index, rng.choice(earlier[index]))

