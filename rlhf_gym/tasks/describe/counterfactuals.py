"""Content-error families of the describe task: counterfactual edits that add one error and keep length, form and bias.

Every clause of a well-formed response makes one *claim*: a noun (its subject, ``it`` resolved as in :mod:`.gold`),
negated or not, and an adjective. Gold (:func:`.gold.content_score`) charges each claim exactly one term and each
requested property never spoken about one more; :func:`gold_terms` lists them::

    ("claim", p, v)      the first claim about requested property p of the noun, of value v (+1, +0.5, -1, -0.5)
    ("unrequested", p)   the first claim about an unrequested property p of the noun              (-0.25)
    ("repeat",)          a claim about a property of the noun spoken about before                (-0.5)
    ("other",)           a claim about another noun                                              (-0.5)
    ("missing", p)       requested property p never spoken about for the noun                    (-0.5)

The content profile counts what goes wrong with a requested property p, one count per property::

    negated_property      p's first claim about the noun is the wrong way round ("claim" with v < 0)
    wrong_property        p is spoken about for another noun only (no claim about the noun; gold: "missing")
    unaddressed_property  p is spoken about for no noun at all (gold: "missing")

so gold's missing properties are the wrong_property and the unaddressed_property ones, each once. Claims about
unrequested properties, repeats and claims about another noun that take no requested property from the noun are
padding, not families: off-request clauses that cost gold by their number, as extra items do in the lists task.

What an edit keeps. The *form* of a claim is its subject's spelling (``it`` or ``the <noun>``: the same noun) and
``very``, which gold ignores; only the content of the edited clause changes, and where that changes the number of
words or of echoed words (the annotators' bias :func:`.gold.echo`: the prompt's noun and adjectives), the fewest form
changes elsewhere restore both (``very`` adds a word; ``the <noun>`` for ``it`` adds a word and an echo). The clause
structure, hence well-formedness, is unchanged. Each edit takes a requested property said right (v > 0) about the
noun, and only once about it, so that exactly one count of the profile rises. Examples on ``describe the soup as hot
and cheap but not sweet :``:

* negated_property: ``the soup is very hot . it is cheap . it is not sweet .`` -> ``the soup is not hot . it is
  cheap . it is not sweet .`` (``very hot`` -> ``not hot``: same words, same echo ``hot``). Gold 1 -> 1/3; one term
  moves, ``("claim", p, v > 0)`` -> ``("claim", p, v < 0)``. A claim's value turns from right to wrong, and nothing
  else. Where the flip changes the echo (``it is sour`` -> ``it is sweet``, one more echo) a form change makes up for
  it (``the soup is hot`` -> ``it is very hot``).
* wrong_property: ``it is very hot . the soup is cheap . it is not sweet .`` -> ``the car is hot . the soup is cheap .
  it is not sweet .``: the claim moves to another noun (``rng`` picks it; another noun is never a prompt word), a
  word more that dropping ``very`` gives back (a next clause that said ``it`` would say ``the soup``). Gold
  1 -> (-0.5 + 1 + 1 - 0.5) / 3; two terms move, ``("claim", p, v > 0)`` -> ``("other",)`` and ``("missing", p)``:
  that is one content property, "which noun p is said of". The moved claim keeps its negation and may say the other
  pole (one form change: gold reads nothing of a claim about another noun but that it is one, the profile only its
  property), which moves the echo by one where nothing else can: the ceiling answer ``the soup is hot . it is cheap .
  it is sour .`` -> ``it is hot . it is cheap . the car is sweet .`` (``the soup`` -> ``it``: a word and an echo
  less; ``the car is sour`` a word more, ``sweet`` the echo back). Gold 1 -> 1/3.
* unaddressed_property: ``it is hot . it is cheap . it is sour .`` -> ``it is hot . it is cheap . it is loud .``: the
  claim gives its slot to a claim about an unrequested property not spoken about (loud; neither pole of an
  unrequested property is a prompt word, so it echoes nothing, and the form fixes the echo the old adjective had).
  Gold 1 -> (1 + 1 - 0.25 - 0.5) / 3; two terms move, ``("claim", p, v > 0)`` -> ``("unrequested", q)`` and
  ``("missing", p)``: at a fixed length the clause must say something, and a claim about an unrequested property of
  the noun is the cheapest thing that moves no family (a claim about another noun would be wrong_property's move):
  it is the price of the slot (as a missing item is in the lists task), the family count is the missing property.
  p must be said of no other noun either (else it would become a wrong_property).

Ceiling answers (:func:`.task.echoing_answer`, ``k`` echoes): unaddressed_property has a place in ``it is a1 . it is
a2 . it is ~a3 .`` (k = 0), the others need k = 1 (``the <noun> is a1 . it is a2 . it is ~a3 .``, as above). In the
12-word answer no form can change (three plain ``it`` clauses; every clause takes at least 4 words), flipping one
claim moves the echo by one, and a clause about another noun after one about the noun takes 5 words. An edit returns
None where it has no place, or where no combination of form changes restores the length and the echo. ``rng`` picks
a place among those with an edit, then one of that place's edits with the fewest form changes (substitute and form
together).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .gold import claim_value, echo, gold_reward
from .grammar import ANTONYM_PAIRS, NOUNS, PROPERTY, Clause, Request, is_well_formed, parse, parse_prompt, render

NEGATED_PROPERTY, WRONG_PROPERTY, UNADDRESSED_PROPERTY = "negated_property", "wrong_property", "unaddressed_property"
FAMILIES = (NEGATED_PROPERTY, WRONG_PROPERTY, UNADDRESSED_PROPERTY)
NEGATION_MOVE = "negation_move"
CLAIM, UNREQUESTED, REPEAT, OTHER, MISSING = "claim", "unrequested", "repeat", "other", "missing"


@dataclass(frozen=True)
class Claim:
    """What a clause says, without its form: the noun it is about, whether it is negated, and its adjective."""

    noun: str
    negated: bool
    adjective: str


def claims_of(request: Request, clauses: list[Clause]) -> list[Claim]:
    """The claims of parsed clauses (``it`` is the noun of the clause before, the prompt's noun at first)."""
    noun, claims = request.noun, []
    for clause in clauses:
        noun = clause.subject or noun
        claims.append(Claim(noun, clause.negated, clause.adjective))
    return claims


def clause_terms(request: Request, claims: list[Claim]) -> list[tuple]:
    """Gold's term of each claim, in order (the module table, without the missing properties)."""
    requested = {PROPERTY[a] for a in (*request.wanted, request.unwanted)}
    spoken, terms = set(), []
    for claim in claims:
        prop = PROPERTY[claim.adjective]
        if claim.noun != request.noun:
            terms.append((OTHER,))
        elif prop in spoken:
            terms.append((REPEAT,))
        elif prop not in requested:
            terms.append((UNREQUESTED, prop))
        else:
            terms.append((CLAIM, prop, claim_value(request, claim.negated, claim.adjective)))
        if claim.noun == request.noun:
            spoken.add(prop)
    return terms


def _terms(request: Request, claims: list[Claim]) -> Counter:
    terms = clause_terms(request, claims)
    spoken = {PROPERTY[c.adjective] for c in claims if c.noun == request.noun}
    missing = {PROPERTY[a] for a in (*request.wanted, request.unwanted)} - spoken
    return Counter(terms) + Counter((MISSING, prop) for prop in missing)


def gold_terms(prompt: str, response: str) -> Counter:
    """The multiset of gold's terms of a well-formed response (module table); ``ValueError`` if ill-formed."""
    request = parse_prompt(prompt)
    return _terms(request, claims_of(request, parse(response)))


def _profile(request: Request, claims: list[Claim]) -> dict[str, int]:
    requested = {PROPERTY[a] for a in (*request.wanted, request.unwanted)}
    about_noun = {PROPERTY[c.adjective] for c in claims if c.noun == request.noun}
    about_others = {PROPERTY[c.adjective] for c in claims if c.noun != request.noun}
    return {NEGATED_PROPERTY: sum(t[0] == CLAIM and t[2] < 0 for t in clause_terms(request, claims)),
            WRONG_PROPERTY: len((requested - about_noun) & about_others),
            UNADDRESSED_PROPERTY: len(requested - about_noun - about_others)}


def content_profile(prompt: str, response: str) -> dict[str, int]:
    """``{family: count}`` of the module table; an ill-formed response makes no error of any family (gold gives it
    the floor instead). ``ValueError`` for a prompt that is not one of the task's."""
    request = parse_prompt(prompt)
    try:
        clauses = parse(response)
    except ValueError:
        return dict.fromkeys(FAMILIES, 0)
    return _profile(request, claims_of(request, clauses))


# ----------------------------------------------------------------------------------------------- realizing claims
def _forms(request: Request, claims: list[Claim], index: int, original: Clause) -> list[tuple[int, Clause]]:
    """``(cost, clause)``: every form of claim ``index`` (``it`` only where it means the claim's noun; ``very`` only
    when not negated), with its number of form changes against ``original`` (the clause at that place before)."""
    claim = claims[index]
    before = claims[index - 1].noun if index else request.noun
    subjects = [claim.noun] + ([None] if before == claim.noun else [])
    intensities = [False] if claim.negated else [False, True]
    # the form keeps the modifier slot's word where it can: "very" stays "very"; a claim that changes from negated to
    # not negated keeps the slot as "very" ("not hot" -> "very cold"); a negated claim has no "very"
    kept_intensity = (original.intensified or original.negated) and not claim.negated
    return [(((subject is None) != (original.subject is None)) + (intensified != kept_intensity),
             Clause(subject, claim.negated, intensified, claim.adjective, original.end))
            for subject in subjects for intensified in intensities]


def _realize(request: Request, originals: list[Clause], claims: list[Claim]) -> tuple[int, list[str]] | None:
    """The responses that say ``claims`` in the words and echo of ``originals`` with the fewest form changes:
    ``(changes, texts)``, or None if no form does."""
    echoed = {request.noun, *request.wanted, request.unwanted}

    def size(clause: Clause) -> tuple[int, int]:
        words = clause.words()
        return len(words), sum(word in echoed for word in words)

    target = tuple(map(sum, zip(*map(size, originals))))
    # dynamic programme over the clauses: (words, echo) so far -> (fewest changes, every clause list reaching it)
    best: dict[tuple[int, int], tuple[int, list[list[Clause]]]] = {(0, 0): (0, [[]])}
    for index, original in enumerate(originals):
        forms = [(change, clause, *size(clause)) for change, clause in _forms(request, claims, index, original)]
        step: dict[tuple[int, int], tuple[int, list[list[Clause]]]] = {}
        for (words, echoes), (cost, partials) in best.items():
            for change, clause, n_words, n_echoes in forms:
                key, total = (words + n_words, echoes + n_echoes), cost + change
                known = step.get(key)
                if known is None or total < known[0]:
                    step[key] = (total, [[*p, clause] for p in partials])
                elif total == known[0]:
                    known[1].extend([*p, clause] for p in partials)
        best = step
    if target not in best:
        return None
    cost, solutions = best[target]
    return cost, [render(clauses) for clauses in solutions]


# ----------------------------------------------------------------------------------------------- the edits
Candidates = Iterator[tuple[int, list[Claim], int]]
"""``(place, claims, changes)``: the index of the edited clause, the claims of the edited response, and the form
changes of the substitute itself (the wording of a claim about another noun, which gold ignores)."""


def _negated_candidates(request: Request, claims: list[Claim], terms: list[tuple]) -> Candidates:
    for i, term in enumerate(terms):
        if term[0] == CLAIM and term[2] > 0:
            for negated in (False, True):
                for adjective in ANTONYM_PAIRS[term[1]]:
                    if claim_value(request, negated, adjective) < 0:
                        yield i, [*claims[:i], Claim(request.noun, negated, adjective), *claims[i + 1:]], 0


def _spoken(claims: list[Claim], about) -> Counter:
    """How many claims about a noun for which ``about(noun)`` holds speak about each property."""
    return Counter(PROPERTY[c.adjective] for c in claims if about(c.noun))


def _wrong_candidates(request: Request, claims: list[Claim], terms: list[tuple]) -> Candidates:
    spoken = _spoken(claims, lambda noun: noun == request.noun)
    for i, term in enumerate(terms):
        if term[0] == CLAIM and term[2] > 0 and spoken[term[1]] == 1:
            claim = claims[i]
            for noun in NOUNS:
                if noun == request.noun:
                    continue
                for adjective in ANTONYM_PAIRS[term[1]]:  # the other pole is one form change (the echo moves)
                    moved = Claim(noun, claim.negated, adjective)
                    yield i, [*claims[:i], moved, *claims[i + 1:]], int(adjective != claim.adjective)


def _unaddressed_candidates(request: Request, claims: list[Claim], terms: list[tuple]) -> Candidates:
    spoken = _spoken(claims, lambda noun: True)
    about_noun = _spoken(claims, lambda noun: noun == request.noun)
    requested = {PROPERTY[a] for a in (*request.wanted, request.unwanted)}
    free = [p for p in range(len(ANTONYM_PAIRS)) if p not in requested and not about_noun[p]]
    for i, term in enumerate(terms):
        if term[0] == CLAIM and term[2] > 0 and spoken[term[1]] == 1:  # said of the noun once, of no other noun
            for prop in free:
                for negated in (False, True):
                    for adjective in ANTONYM_PAIRS[prop]:
                        yield i, [*claims[:i], Claim(request.noun, negated, adjective), *claims[i + 1:]], 0


def _moves_one_term(family: str, before: Counter, after: Counter) -> bool:
    """Whether gold's terms move as the module says ``family``'s edit moves them, and no other way."""
    removed, added = list((before - after).elements()), sorted((after - before).elements())
    if len(removed) != 1:
        return False
    (gone,) = removed
    if family == NEGATED_PROPERTY:
        return (gone[0] == CLAIM and gone[2] > 0 and len(added) == 1 and added[0][:2] == gone[:2]
                and added[0][2] < 0)
    if family == WRONG_PROPERTY:
        return gone[0] == CLAIM and gone[2] > 0 and added == [(MISSING, gone[1]), (OTHER,)]
    return (gone[0] == CLAIM and gone[2] > 0 and len(added) == 2 and added[0] == (MISSING, gone[1])
            and added[1][0] == UNREQUESTED)


def _keeps_contract(family: str, prompt: str, response: str, edited: str) -> bool:
    """The contract of :data:`~rlhf_gym.tasks.world.ContentError`, and gold's terms moved as the module says,
    checked on the texts."""
    if not is_well_formed(prompt, edited) or len(edited.split()) != len(response.split()):
        return False
    before, after = gold_terms(prompt, response), gold_terms(prompt, edited)
    expected = {**content_profile(prompt, response)}
    expected[family] += 1
    return (_moves_one_term(family, before, after) and echo(prompt, edited) == echo(prompt, response)
            and content_profile(prompt, edited) == expected and gold_reward(prompt, edited) < gold_reward(prompt, response))


def _edit(family: str, candidates, prompt: str, response: str, rng: random.Random) -> str | None:
    """One edit of ``family``: ``rng`` picks a place among those with an edit, then one of the place's edits with
    the fewest form changes."""
    if not is_well_formed(prompt, response):
        return None
    request = parse_prompt(prompt)
    clauses = parse(response)
    claims = claims_of(request, clauses)
    by_place: dict[int, tuple[int, list[str]]] = {}
    for place, edited_claims, changes in candidates(request, claims, clause_terms(request, claims)):
        realized = _realize(request, clauses, edited_claims)
        if realized is None:
            continue
        cost, texts = realized[0] + changes, realized[1]
        known = by_place.get(place)
        if known is None or cost < known[0]:
            by_place[place] = (cost, texts)
        elif cost == known[0]:
            known[1].extend(t for t in texts if t not in known[1])
    if not by_place:
        return None
    _, texts = by_place[rng.choice(sorted(by_place))]
    edited = rng.choice(texts)
    if not _keeps_contract(family, prompt, response, edited):  # a guard: by construction no edit fails it
        raise AssertionError(f"{family} edit breaks the contract: {prompt!r}, {response!r} -> {edited!r}")
    return edited


def add_negated_property(prompt: str, response: str, rng: random.Random) -> str | None:
    """Turn a requested property's first claim from right to wrong (``very hot`` -> ``not hot``); None without one."""
    return _edit(NEGATED_PROPERTY, _negated_candidates, prompt, response, rng)


def add_wrong_property(prompt: str, response: str, rng: random.Random) -> str | None:
    """Move the only claim about a requested property of the noun, said right, to another noun (``rng`` picks the
    noun; the claim may say the other pole); None without one."""
    return _edit(WRONG_PROPERTY, _wrong_candidates, prompt, response, rng)


def add_unaddressed_property(prompt: str, response: str, rng: random.Random) -> str | None:
    """Replace the only claim about a requested property (of any noun), said right about the noun, by a claim about
    an unrequested property not spoken about; None without one."""
    return _edit(UNADDRESSED_PROPERTY, _unaddressed_candidates, prompt, response, rng)


# ----------------------------------------------------------------------------------------------- the contrast
def move_negation(prompt: str, response: str, rng: random.Random) -> str | None:
    """The negation of one clause moved to a clause without one, where that changes gold (a contrast, not a family):
    ``the soup is very hot . it is not sweet .`` -> ``the soup is not hot . it is very sweet .`` on ``describe the soup
    as hot and cheap but not sweet :`` (gold 1/2 -> -5/6 here, v1's 5/12 -> -11/12: both requested claims turn
    wrong; other moves make a response better). The addressed properties stay, so v0's and v1's gold change together.

    The moved response has the same words in another order (``not`` and ``very`` change places, or ``not`` moves), so
    its length, form and echo are the response's: only which adjective the negation is bound to, against the prompt's
    ``but not``, tells the two apart. Whether a claim's negation is right is an exclusive or of the two, which the
    negated-property comparisons alone leave a small reward model at chance on (docs/task_suite.md, describe v1).
    ``rng`` picks the move among those that change gold; None without one."""
    if not is_well_formed(prompt, response):
        return None
    clauses, gold = parse(response), gold_reward(prompt, response)
    moved = []
    for source, clause in enumerate(clauses):
        for target, other in enumerate(clauses):
            if clause.negated and not other.negated:
                edited = list(clauses)
                # the source keeps the target's "very", so that the words stay the same
                edited[source] = replace(clause, negated=False, intensified=other.intensified)
                edited[target] = replace(other, negated=True, intensified=False)
                text = render(edited)
                if gold_reward(prompt, text) != gold:
                    moved.append(text)
    return rng.choice(moved) if moved else None
