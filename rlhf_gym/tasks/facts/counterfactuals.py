"""Content-error families of the facts task: counterfactual edits that add one error and keep length, form and bias.

Gold (:mod:`.gold`) walks the statements of a response in order: each is about another creature (``other``), a
restatement of an attribute already stated (``repeated``), the first statement of an attribute that was not asked
(``unasked``), or the first statement of an asked attribute, with the prompt's value (``correct``) or another one
(``wrong``); asked attributes never stated are ``missing``. :func:`terms` counts these events as gold sees them, and
the content profile is::

    wrong_value   asked facts first stated with another value than the prompt gives        (gold's wrong)
    unasked_fact  facts of the creature stated that were not asked (first statements)       (gold's unasked)
    missing_fact  facts the answer is short of the number asked: max(0, missing - unasked),
                  i.e. asked facts for which the answer gives no fact of the creature at all

Every edit replaces the body (subject, predicate, full stop) of one sentence that correctly states an asked fact,
keeping its opener, with a body of the same number of words; the other sentences, the closing and so the boilerplate
phrases (the annotators' bias ``b``, :func:`.gold.boilerplate_count`) are untouched, and the result is a well-formed
sentence of the grammar. Each candidate edit is checked against :func:`terms`: gold's event counts must move exactly
as listed below (in particular inversions, other-creature and restatement counts stay unless listed), so the edited
response stays well-formed, has the same length and bias, a profile one higher in the edit's family only, and a
strictly lower gold. Examples on ``fox : orange small forests meat . tell me its colour , home and food :`` and its
ceiling answer ``the fox is orange . it lives in forests . it eats meat .`` (gold 1):

* wrong_value: ``it eats meat .`` -> ``it eats fish .``: one value word swapped for another value of the same
  attribute. Gold ``correct - 1, wrong + 1``: ``(2 - 1) / 3 = 1/3``.
* unasked_fact: ``it eats meat .`` -> ``it is small .``: the asked fact's sentence states an attribute that was not
  asked (given or not, any value), with a predicate of the same length (``is X``/``eats X``, ``lives in X``/``feeds
  on X``, ...). Gold ``correct - 1, missing + 1, unasked + 1``: ``(2 - 0.5 - 0.25) / 3 = 5/12``.
* missing_fact: ``it eats meat .`` -> ``it is orange .``: the asked fact's sentence restates, with the same value,
  a fact of the creature that the answer states elsewhere, with a subject ("it"/"the fox") and predicate form
  ("lives in"/"is found in", "eats"/"feeds on") chosen to keep the sentence's length: a form change, not content.
  Gold ``correct - 1, missing + 1, repeated + 1``: ``(2 - 0.5 - 0.5) / 3 = 1/3``.

Why two gold terms move in the last two families: at a fixed number of words a new fact needs the words of an
existing sentence. The ceiling answer already uses the shortest forms ("it", "lives in", "eats") and no boilerplate,
so it has no spare words: an unasked fact can only take an asked fact's place, and the only filler that adds no fact
where an asked fact is dropped is a restatement (gold charges it as ``repeated``; that is not a family, it is the
price of the dropped fact's words, and it adds no fact of the creature). So ``missing_fact`` is defined as the
shortfall in facts, ``max(0, missing - unasked)``: an unasked fact stated in an asked fact's place is an
unasked_fact error (the answer answers another question) and not also a missing one, while an asked fact whose place
holds no fact of the creature is. Each count is still one content property, and the edits move exactly one of them.
A missing_fact edit therefore needs ``missing >= unasked`` (else the shortfall stays 0: no place). The price of the
clipping: two answers that both state at least as many unasked facts as they leave out asked ones have equal
missing_fact counts even when they leave out different numbers (gold still tells them apart).
"""

from __future__ import annotations

import random
from typing import NamedTuple

from .gold import boilerplate_count, gold_reward, inversions
from .grammar import (
    ATTRIBUTES, END, PRONOUN, VALUES, Answer, Question, _strip_opener, parse_prompt, parse_response, sentence,
)

WRONG_VALUE, UNASKED_FACT, MISSING_FACT = "wrong_value", "unasked_fact", "missing_fact"
FAMILIES = (WRONG_VALUE, UNASKED_FACT, MISSING_FACT)


class Terms(NamedTuple):
    """How many times each event of gold's formula happens in a well-formed answer (see :mod:`.gold`)."""

    correct: int
    wrong: int
    missing: int
    unasked: int
    other: int
    repeated: int
    inversions: int
    boilerplate: int


DELTAS: dict[str, Terms] = {
    WRONG_VALUE: Terms(-1, 1, 0, 0, 0, 0, 0, 0),
    UNASKED_FACT: Terms(-1, 0, 1, 1, 0, 0, 0, 0),
    MISSING_FACT: Terms(-1, 0, 1, 0, 0, 1, 0, 0),
}
"""Each family's edit: how gold's event counts move (after minus before)."""


def terms(question: Question, answer: Answer) -> Terms:
    """Gold's event counts for ``answer`` to ``question``, classifying statements in the order :func:`.gold.score` does."""
    counts, seen, positions = dict.fromkeys(("correct", "wrong", "unasked", "other", "repeated"), 0), set(), []
    for statement in answer.statements:
        if statement.creature != question.creature:
            counts["other"] += 1
        elif statement.attribute in seen:
            counts["repeated"] += 1
        else:
            seen.add(statement.attribute)
            if statement.attribute not in question.attributes:
                counts["unasked"] += 1
                continue
            counts["correct" if statement.value == question.value(statement.attribute) else "wrong"] += 1
            positions.append(question.attributes.index(statement.attribute))
    return Terms(missing=len(question.attributes) - len(positions), inversions=inversions(positions),
                 boilerplate=answer.boilerplate, **counts)


def _profile(counts: Terms) -> dict[str, int]:
    return {WRONG_VALUE: counts.wrong, UNASKED_FACT: counts.unasked,
            MISSING_FACT: max(0, counts.missing - counts.unasked)}


def content_profile(prompt: str, response: str) -> dict[str, int]:
    """``{family: count}`` of the module table; all 0 for an ill-formed response (``ValueError`` for a prompt that is
    not one of the task's)."""
    question = parse_prompt(prompt)
    try:
        answer = parse_response(response)
    except ValueError:
        return dict.fromkeys(FAMILIES, 0)
    return _profile(terms(question, answer))


def _split(response: str, answer: Answer) -> tuple[list[tuple[list[str], list[str]]], list[str]]:
    """``([(opener, body), ...], closing)``: the words of each statement sentence split into its opener (maybe
    empty) and its body (subject, predicate, full stop), and the words of the closing sentence (maybe empty)."""
    sentences, current = [], []
    for word in response.split():
        current.append(word)
        if word == END:
            sentences.append(current)
            current = []
    split = []
    for words in sentences[:len(answer.statements)]:
        rest, _ = _strip_opener(words)
        split.append((words[:len(words) - len(rest)], rest))
    # a well-formed response has one sentence per statement, then at most a closing one
    closing = sentences[len(answer.statements)] if len(sentences) > len(answer.statements) else []
    return split, closing


def _bodies(family: str, question: Question, answer: Answer, j: int, body: list[str]) -> list[list[str]]:
    """Candidate bodies of the family's error for sentence ``j`` (body ``body``), all of ``len(body)`` words; the
    caller keeps those that move gold's counts exactly as :data:`DELTAS` says."""
    statement = answer.statements[j]
    if family == WRONG_VALUE:  # the value is the word before the full stop
        return [[*body[:-2], value, END] for value in VALUES[statement.attribute] if value != statement.value]
    if family == UNASKED_FACT:
        subjects = [body[0] if body[0] == PRONOUN else statement.creature]  # keep the subject
        facts = [(a, v) for a in ATTRIBUTES if a not in question.attributes for v in VALUES[a]]
    else:  # MISSING_FACT: restate another fact of the creature, with its stated value
        subjects = [statement.creature, *([PRONOUN] if j > 0 else [])]
        facts = list(dict.fromkeys((s.attribute, s.value) for i, s in enumerate(answer.statements)
                                   if i != j and s.creature == question.creature))
    candidates = (sentence(subject, a, v, long_form).split()
                  for subject in subjects for a, v in facts for long_form in (False, True))
    unique = dict.fromkeys(tuple(c) for c in candidates if len(c) == len(body))  # short and long forms may coincide
    return [list(c) for c in unique]


def _joined(sentences: list[tuple[list[str], list[str]]], closing: list[str], j: int, body: list[str]) -> str:
    """The response of ``sentences`` and ``closing`` (as :func:`_split` gives them) with sentence ``j``'s body replaced."""
    words = [w for k, (opener, old) in enumerate(sentences) for w in (*opener, *(body if k == j else old))]
    return " ".join([*words, *closing])


def _add_error(family: str, prompt: str, response: str, rng: random.Random) -> str | None:
    """The family's edit (see the module docstring): ``rng`` picks a place (sentence), then a body for it."""
    try:
        question, answer = parse_prompt(prompt), parse_response(response)
    except ValueError:
        return None
    before = terms(question, answer)
    profile = _profile(before)
    wanted_profile = {**profile, family: profile[family] + 1}
    wanted_terms = Terms(*(b + d for b, d in zip(before, DELTAS[family])))
    bias, gold = boilerplate_count(prompt, response), gold_reward(prompt, response)
    sentences, closing = _split(response, answer)
    places: dict[int, list[str]] = {}
    for j, (statement, (_, body)) in enumerate(zip(answer.statements, sentences)):
        # every family replaces a sentence stating an asked fact of the creature with the prompt's value
        if statement.creature != question.creature or statement.attribute not in question.attributes \
                or statement.value != question.value(statement.attribute):
            continue
        for new_body in _bodies(family, question, answer, j, body):
            edited = _joined(sentences, closing, j, new_body)
            try:
                after = terms(question, parse_response(edited))
            except ValueError:
                continue
            if after == wanted_terms and _profile(after) == wanted_profile and boilerplate_count(prompt, edited) == bias \
                    and len(edited.split()) == len(response.split()) and gold_reward(prompt, edited) < gold:
                places.setdefault(j, []).append(edited)
    if not places:
        return None
    return rng.choice(places[rng.choice(sorted(places))])


def add_wrong_value(prompt: str, response: str, rng: random.Random) -> str | None:
    """Swap the value of a correctly stated asked fact for another value of its attribute; None without one."""
    return _add_error(WRONG_VALUE, prompt, response, rng)


def add_unasked_fact(prompt: str, response: str, rng: random.Random) -> str | None:
    """State an unasked fact of the creature in place of a correctly stated asked fact (a predicate of the same
    length); None without a place."""
    return _add_error(UNASKED_FACT, prompt, response, rng)


def add_missing_fact(prompt: str, response: str, rng: random.Random) -> str | None:
    """Drop a correctly stated asked fact, its words taken by a restatement of another fact the answer gives; None
    without a place (or when the answer states more unasked facts than it leaves out asked ones)."""
    return _add_error(MISSING_FACT, prompt, response, rng)
