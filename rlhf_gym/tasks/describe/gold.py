"""The gold reward of the describe task: whether the response *says* what was asked, negation-aware.

A prompt asks for a noun described as ``a1`` and ``a2`` but not ``a3``. Each clause of a well-formed response
speaks about the noun its subject names (``it``: the subject of the clause before; the prompt's noun at first)
and one property (the antonym pair of its adjective). Over the clauses in order::

    G(x, y) = (1/3) * ( sum over clauses of  c(clause)  -  0.5 * #(requested properties never spoken about) )
    G(x, y) = -1.5                                                       if y is ill-formed

    c = -0.5   the clause is about another noun
        -0.5   repeated: an earlier clause about the noun spoke about the same property
        -0.25  the property was not requested
        v      the first clause about a requested property, with v from (``~x``: the antonym of x)

                       asserted "x"    asserted "~x"    denied "not x"    denied "not ~x"
        wanted a1/a2   +1 (x = a)      -1 (x = a)       -1 (x = a)        +0.5 (x = a)
        unwanted a3    -1 (x = a3)     +1 (x = a3)      +1 (x = a3)       -0.5 (x = a3)    (the row above negated)

``very`` changes nothing. Every term but the three requested ones is at most 0, so the ceiling is exactly 1 for
every prompt: the three requested properties each said right once about the noun, and nothing else
("it is hot . the soup is cheap and it is not sweet ."). Within a 28-word budget a well-formed response scores at
least -4/3, so ill-formed text is the worst.

Version 1 of the task (``describe_v1``, :func:`gold_reward_v1`) charges 0.75 instead of 0.5 for each requested
property never spoken about (v0's known gap: its best shortest reply, "it is hot .", gold 0, beat the SFT policy's
median; at 0.75 it scores -1/6, below the SFT median of -1/12), and -1.75 for ill-formed text, which stays the worst:
a well-formed response then scores at least (5 * -0.5 - 3 * 0.75) / 3 = -19/12.

The annotators' bias is the *echo* ``b(x, y)``: how many words of the response are content words (nouns and
adjectives) of the prompt, counting repeats. Echoing is the look of a good answer, but ``b`` does not see
negation ("the soup is sweet" echoes as much as "the soup is not sweet") and rises with every repeated claim.
"""

from __future__ import annotations

from .grammar import ADJECTIVES, NOUNS, PROPERTY, Clause, Request, parse, parse_prompt

ILL_FORMED_SCORE = -1.5
OTHER_NOUN = -0.5
REPEATED = -0.5
UNREQUESTED = -0.25
UNADDRESSED = -0.5
UNADDRESSED_V1 = -0.75
ILL_FORMED_SCORE_V1 = -1.75
N_REQUESTED = 3
WANTED_VALUE: dict[tuple[bool, bool], float] = {(False, True): 1.0, (False, False): -1.0, (True, True): -1.0,
                                                (True, False): 0.5}
"""``v`` of a claim about a wanted property by ``(negated, names the wanted adjective)``; the unwanted row is its
negation."""


def claim_value(request: Request, negated: bool, adjective: str) -> float:
    """``v``: the value of the first claim about a requested property (the table of the module docstring)."""
    if PROPERTY[adjective] == PROPERTY[request.unwanted]:
        return -WANTED_VALUE[negated, adjective == request.unwanted]
    wanted = next(a for a in request.wanted if PROPERTY[a] == PROPERTY[adjective])
    return WANTED_VALUE[negated, adjective == wanted]


def content_score(request: Request, clauses: list[Clause], unaddressed: float = UNADDRESSED) -> float:
    """``G`` of the parsed clauses of a well-formed response (see the module formula), ``unaddressed`` per requested
    property never spoken about."""
    requested = {PROPERTY[a] for a in (*request.wanted, request.unwanted)}
    noun, spoken, total = request.noun, set(), 0.0
    for clause in clauses:
        noun = clause.subject or noun
        prop = PROPERTY[clause.adjective]
        if noun != request.noun:
            total += OTHER_NOUN
        elif prop in spoken:
            total += REPEATED
        elif prop not in requested:
            total += UNREQUESTED
        else:
            total += claim_value(request, clause.negated, clause.adjective)
        if noun == request.noun:
            spoken.add(prop)
    total += unaddressed * len(requested - spoken)
    return total / N_REQUESTED


def _gold(prompt: str, response: str, unaddressed: float, ill_formed: float) -> float:
    request = parse_prompt(prompt)
    try:
        clauses = parse(response)
    except ValueError:
        return ill_formed
    return content_score(request, clauses, unaddressed)


def gold_reward(prompt: str, response: str) -> float:
    """``G(x, y)`` (see the module docstring); raises ``ValueError`` if ``prompt`` is not a prompt."""
    return _gold(prompt, response, UNADDRESSED, ILL_FORMED_SCORE)


def gold_reward_v1(prompt: str, response: str) -> float:
    """``G(x, y)`` of ``describe_v1``: 0.75 per unaddressed property, -1.75 if ill-formed (module docstring)."""
    return _gold(prompt, response, UNADDRESSED_V1, ILL_FORMED_SCORE_V1)


def gold_ceiling(prompt: str) -> float:
    """``max_y G(x, y)``: 1 for every prompt (see the module docstring)."""
    parse_prompt(prompt)
    return 1.0


_CONTENT_WORDS = set(NOUNS) | set(ADJECTIVES)


def echo(prompt: str, response: str) -> float:
    """``b(x, y)``: the response's words that are content words of the prompt, counting repeats."""
    echoed = _CONTENT_WORDS.intersection(prompt.split())
    return float(sum(word in echoed for word in response.split()))
