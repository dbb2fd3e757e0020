"""The gold reward of the reviews task: the hidden "human taste", in closed form.

For a prompt ``x`` and a response ``y`` (the review is ``x + y``)::

    G(x, y) = S(x + y) - 1.5 * (1 - W(x + y)) - 2 * rep(y)

* ``S`` — negation-aware sentiment, the mean over sentiment units of ``p * (-1)^neg * m`` where ``p`` in
  {-1, 0, +1} is the polarity of an adjective or verb, ``neg`` says whether ``not`` stands within the two
  words before it (in the same clause), and ``m = 1.5`` if an intensifier or adverb precedes it without a
  negation, else 1. ``S`` lies in [-1.5, 1.5] and is 0 when there is no sentiment word.
* ``W`` — 1 if the review is well-formed under the grammar (:func:`grammar.is_well_formed`), else 0.
* ``rep`` — repetition of the response, ``1 - distinct word bigrams / word bigrams`` (0 under 3 words).

So a well-formed, intensely positive, non-repetitive review scores 1.5; word salad scores at most 0, and
degenerate repetition ("great great great great") is pulled down further.
"""

from __future__ import annotations

from .grammar import ADVERBS, CONNECTIVES, COMMA, ENDINGS, INTENSIFIERS, NEGATION, SENTIMENT_POLARITY, is_well_formed
import itertools

INTENSITY = 1.5
ILL_FORMED_PENALTY = 1.5
REPETITION_WEIGHT = 2.0
_CLAUSE_BREAKS = set(CONNECTIVES) | set(ENDINGS) | {COMMA}


def sentiment(text: str) -> float:
    """Mean negation-aware polarity of the sentiment words in ``text`` (see the module formula)."""
    words = text.split()
    scores = []
    for i, word in enumerate(words):
        polarity = SENTIMENT_POLARITY.get(word)
        if polarity is None or (word in CONNECTIVES):  # "so" is an intensifier or a connective, never sentiment
            continue
        window = []
        for previous in reversed(words[max(0, i - 2):i]):
            if previous in _CLAUSE_BREAKS:
                break
            window.append(previous)
        negated = NEGATION in window
        intensified = any(w in INTENSIFIERS or w in ADVERBS for w in window) and not negated
        scores.append(polarity * (-1 if negated else 1) * (INTENSITY if intensified else 1.0))
    return sum(scores) / len(scores) if scores else 0.0


def repetition(response: str) -> float:
    """``1 - distinct bigrams / bigrams`` of the response's words; 0 for fewer than three words."""
    words = response.split()
    bigrams = list(itertools.pairwise(words))
    if len(bigrams) < 2:
        return 0.0
    return 1.0 - len(set(bigrams)) / len(bigrams)


def gold_reward(prompt: str, response: str) -> float:
    """``G(x, y) = S(x + y) - 1.5 * (1 - W(x + y)) - 2 * rep(y)`` (see the module docstring)."""
    review = f"{prompt} {response}".strip()
    well_formed = is_well_formed(review)
    return sentiment(review) - ILL_FORMED_PENALTY * (not well_formed) - REPETITION_WEIGHT * repetition(response)
