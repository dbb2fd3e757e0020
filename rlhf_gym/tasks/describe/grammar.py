"""The describe language: a request for a description, a mediocre assistant's answers, and their parser.

The language (whitespace-separated words; punctuation is a word of its own)::

    prompt      := "describe" "the" noun "as" adj1 "and" adj2 "but" "not" adj3 ":"
    response    := clause ( ( "and" | "." ) clause )* "."
    clause      := subject "is" predicate
    subject     := "the" noun | "it"
    predicate   := "not" adjective | [ "very" ] adjective

``adj1``, ``adj2`` and ``adj3`` come from three different antonym pairs (a pair is one *property*: temperature
``hot``/``cold``, price ``cheap``/``expensive`` ...). ``it`` stands for the subject of the clause before, or for the
prompt's noun in the first clause. There are 20 nouns x 45 unordered property pairs for ``adj1``/``adj2`` x 8
properties left for ``adj3`` x 2^3 poles = 57600 prompts.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace
from functools import cache

from ..parsing import WordCursor

NOUNS = [
    "soup", "coffee", "bread", "cake", "pizza", "salad", "tea", "room", "kitchen", "bed",
    "chair", "car", "bike", "phone", "book", "shirt", "lamp", "house", "train", "desk",
]
ANTONYM_PAIRS = [
    ("hot", "cold"), ("cheap", "expensive"), ("fresh", "stale"), ("soft", "hard"), ("sweet", "sour"),
    ("quiet", "loud"), ("clean", "dirty"), ("light", "heavy"), ("fast", "slow"), ("new", "old"),
]
ADJECTIVES = [adjective for pair in ANTONYM_PAIRS for adjective in pair]
ANTONYM: dict[str, str] = {**dict(ANTONYM_PAIRS), **{b: a for a, b in ANTONYM_PAIRS}}
PROPERTY: dict[str, int] = {adjective: i for i, pair in enumerate(ANTONYM_PAIRS) for adjective in pair}
"""The property (index of its antonym pair) that an adjective speaks about."""
DETERMINER, PRONOUN, COPULA, NEGATION, INTENSIFIER = "the", "it", "is", "not", "very"
AND, END = "and", "."
PROMPT_WORDS = ["describe", "as", "but", ":"]


def vocabulary() -> list[str]:
    """Every word of the language, sorted and without duplicates."""
    words = set(NOUNS + ADJECTIVES + PROMPT_WORDS) | {DETERMINER, PRONOUN, COPULA, NEGATION, INTENSIFIER, AND, END}
    return sorted(words)


# ----------------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Request:
    """What a prompt asks for: ``noun`` described as both ``wanted`` adjectives and not as ``unwanted``."""

    noun: str
    wanted: tuple[str, str]
    unwanted: str

    def text(self) -> str:
        first, second = self.wanted
        return f"describe the {self.noun} as {first} and {second} but not {self.unwanted} :"


def parse_prompt(prompt: str) -> Request:
    """The request of a prompt; raise ``ValueError`` if ``prompt`` is not a prompt of the language."""
    words = prompt.split()
    if len(words) != 11:
        raise ValueError(f"a prompt has 11 words, not {len(words)}: {prompt!r}")
    request = Request(words[2], (words[4], words[6]), words[9])
    adjectives = [*request.wanted, request.unwanted]
    if (request.noun not in NOUNS or any(a not in PROPERTY for a in adjectives)
            or len({PROPERTY[a] for a in adjectives}) != 3 or request.text() != " ".join(words)):
        raise ValueError(f"not a prompt: {prompt!r}")
    return request


@cache
def _all_requests() -> tuple[Request, ...]:
    requests = []
    for noun, (p1, p2), p3 in itertools.product(NOUNS, itertools.combinations(range(len(ANTONYM_PAIRS)), 2),
                                                range(len(ANTONYM_PAIRS))):
        if p3 in (p1, p2):
            continue
        for a1, a2, a3 in itertools.product(ANTONYM_PAIRS[p1], ANTONYM_PAIRS[p2], ANTONYM_PAIRS[p3]):
            requests.append(Request(noun, (a1, a2), a3))
    return tuple(requests)


def all_prompts() -> list[str]:
    """Every prompt, enumerated in a fixed order (20 x 45 x 8 x 8 = 57600)."""
    return [request.text() for request in _all_requests()]


# ----------------------------------------------------------------------------------------------- responses
@dataclass(frozen=True)
class Clause:
    """``subject is [not | very] adjective`` and the word after it (``and`` or ``.``).

    ``subject`` is a noun, or ``None`` for ``it``.
    """

    subject: str | None
    negated: bool
    intensified: bool
    adjective: str
    end: str = END

    def words(self) -> list[str]:
        subject = [DETERMINER, self.subject] if self.subject else [PRONOUN]
        predicate = [NEGATION] * self.negated + [INTENSIFIER] * self.intensified + [self.adjective]
        return [*subject, COPULA, *predicate, self.end]


def render(clauses: list[Clause]) -> str:
    """The response text of ``clauses`` (the last one should end with ``.``)."""
    return " ".join(word for clause in clauses for word in clause.words())


class _Parser(WordCursor):
    """Recursive-descent parser of responses; raises ``ValueError`` at the first bad word."""

    def clause(self) -> Clause:
        subject = self.take(NOUNS) if self.take({DETERMINER, PRONOUN}) == DETERMINER else None
        self.take({COPULA})
        modifier = self.peek() if self.peek() in (NEGATION, INTENSIFIER) else None
        self.i += modifier is not None
        adjective = self.take(PROPERTY)
        return Clause(subject, modifier == NEGATION, modifier == INTENSIFIER, adjective, self.take({AND, END}))

    def response(self) -> list[Clause]:
        clauses = [self.clause()]
        while self.peek() is not None or clauses[-1].end != END:
            clauses.append(self.clause())
        return clauses


def parse(response: str) -> list[Clause]:
    """The clauses of a response; raise ``ValueError`` if it is not well-formed."""
    return _Parser(response.split()).response()


def is_well_formed(prompt: str, response: str) -> bool:
    """Whether ``prompt`` is a prompt and ``response`` a complete response of the language."""
    try:
        parse_prompt(prompt)
        parse(response)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- generator
@dataclass(frozen=True)
class GeneratorConfig:
    """Probabilities of the mediocre assistant.

    :param p_address: probability that a requested property is spoken about.
    :param p_right: probability that a wanted adjective is asserted (else ``not`` its antonym with
        ``p_hedge``, else contradicted).
    :param p_hedge: probability of ``not <antonym>`` for a wanted adjective.
    :param p_deny: probability that the unwanted adjective is denied with ``not`` (else its antonym with
        ``p_antonym``, else asserted: the ``not`` of the request is dropped and its words echoed).
    :param p_antonym: probability that the unwanted adjective is denied by asserting its antonym.
    :param p_other: probability of each extra claim about an unrequested property (at most two).
    :param p_negate_other: probability that such an extra claim is negated.
    :param p_repeat: probability of saying one requested claim twice.
    :param p_it: probability that a later clause says ``it`` rather than ``the <noun>``.
    :param p_it_first: the same for the first clause.
    :param p_wrong_noun: probability that a clause names another noun.
    :param p_very: probability of ``very`` before an adjective that is not negated.
    :param p_and: probability of joining two clauses with ``and`` rather than ``.``.
    :param max_words: responses are cut to whole clauses within this many words.
    """

    p_address: float = 0.9
    p_right: float = 0.75
    p_hedge: float = 0.1
    p_deny: float = 0.6
    p_antonym: float = 0.15
    p_other: float = 0.8
    p_negate_other: float = 0.2
    p_repeat: float = 0.5
    p_it: float = 0.5
    p_it_first: float = 0.2
    p_wrong_noun: float = 0.08
    p_very: float = 0.2
    p_and: float = 0.3
    max_words: int = 24


Claim = tuple[bool, str]
"""``(negated, adjective)``: what one clause says."""


class DescribeGenerator:
    """Sampler of ``(prompt, response)`` texts of a mediocre assistant (seeded through the ``rng`` passed in)."""

    def __init__(self, config: GeneratorConfig | None = None):
        self.config = config or GeneratorConfig()

    def request(self, rng: random.Random) -> Request:
        p1, p2, p3 = rng.sample(range(len(ANTONYM_PAIRS)), 3)
        wanted = tuple(sorted((rng.choice(ANTONYM_PAIRS[p1]), rng.choice(ANTONYM_PAIRS[p2])), key=PROPERTY.get))
        return Request(rng.choice(NOUNS), wanted, rng.choice(ANTONYM_PAIRS[p3]))

    def wanted_claim(self, rng: random.Random, adjective: str) -> Claim:
        u = rng.random()
        if u < self.config.p_right:
            return False, adjective
        if u < self.config.p_right + self.config.p_hedge:
            return True, ANTONYM[adjective]
        return rng.choice([(True, adjective), (False, ANTONYM[adjective])])

    def unwanted_claim(self, rng: random.Random, adjective: str) -> Claim:
        u = rng.random()
        if u < self.config.p_deny:
            return True, adjective
        return (False, ANTONYM[adjective]) if u < self.config.p_deny + self.config.p_antonym else (False, adjective)

    def claims(self, rng: random.Random, request: Request) -> list[Claim]:
        """What the response says, shuffled: requested properties (maybe one twice) and maybe others."""
        config = self.config
        claims = [self.wanted_claim(rng, a) for a in request.wanted if rng.random() < config.p_address]
        if rng.random() < config.p_address:
            claims.append(self.unwanted_claim(rng, request.unwanted))
        if claims and rng.random() < config.p_repeat:
            claims.append(rng.choice(claims))
        requested = {PROPERTY[a] for a in (*request.wanted, request.unwanted)}
        others = [a for a in ADJECTIVES if PROPERTY[a] not in requested]
        claims += [(rng.random() < config.p_negate_other, rng.choice(others))
                   for _ in range(2) if rng.random() < config.p_other]
        rng.shuffle(claims)
        return claims or [self.wanted_claim(rng, rng.choice(request.wanted))]

    def subject(self, rng: random.Random, noun: str, first: bool) -> str | None:
        if rng.random() < self.config.p_wrong_noun:
            return rng.choice([n for n in NOUNS if n != noun])
        return None if rng.random() < (self.config.p_it_first if first else self.config.p_it) else noun

    def response(self, rng: random.Random, request: Request) -> list[Clause]:
        """The clauses of an answer to ``request``, cut to whole clauses within ``max_words``."""
        config, clauses, n_words = self.config, [], 0
        for negated, adjective in self.claims(rng, request):
            intensified = not negated and rng.random() < config.p_very
            end = AND if rng.random() < config.p_and else END
            clause = Clause(self.subject(rng, request.noun, not clauses), negated, intensified, adjective, end)
            n_words += len(clause.words())
            if n_words > config.max_words:
                break
            clauses.append(clause)
        clauses[-1] = replace(clauses[-1], end=END)
        return clauses

    def sample(self, rng: random.Random) -> tuple[str, str]:
        """One SFT text as ``(prompt, response)``."""
        request = self.request(rng)
        return request.text(), render(self.response(rng, request))
