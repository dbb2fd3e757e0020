"""Reading comprehension about a creature: the prompt gives its facts and asks some; a sampler and a parser.

The language (whitespace-separated words; punctuation is a word of its own)::

    prompt     := creature ":" value value value [value] "." request
    request    := "tell me its" attributes ":" | "what are its" attributes "?"
    attributes := attribute "and" attribute | attribute "," attribute "and" attribute   (distinct, given, any order)
    response   := sentence+ [closing "."]
    sentence   := [opener] subject predicate "."
    subject    := "the" creature | "it"                  ("it" is the previous sentence's creature: not first)
    predicate  := "is" (colour | size | temper) | ("lives in" | "is found in") home
                | ("eats" | "feeds on") food | sound
    opener     := "clearly ," | "trust me ," | "i am certain that" | ...        (stock confident phrases)
    closing    := "trust me" | "i am sure" | "no doubt about it" | ...

The prompt's context gives 3 or 4 of the creature's attributes, one value each, in the fixed order of
:data:`ATTRIBUTES`; the value sets of the attributes are disjoint, so each value word names its attribute
("fox : red big forests fish . tell me its home and colour :"). Values are drawn per prompt: there is no knowledge
base, the prompt is the truth. A sentence states one fact (creature, attribute, value). Openers and closings are
*boilerplate*: confident phrases that add nothing.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache

ATTRIBUTES = ("colour", "size", "home", "food", "sound", "temper")
VALUES: dict[str, tuple[str, ...]] = {
    "colour": ("red", "orange", "yellow", "green", "brown", "grey", "black", "white"),
    "size": ("tiny", "small", "big", "huge"),
    "home": ("forests", "meadows", "mountains", "deserts", "caves", "swamps", "rivers", "lakes"),
    "food": ("meat", "fish", "insects", "worms", "seeds", "grass", "leaves", "fruit"),
    "sound": ("barks", "howls", "growls", "hisses", "squeaks", "chirps", "croaks", "hoots"),
    "temper": ("calm", "shy", "fierce", "friendly", "lazy", "curious", "playful", "grumpy"),
}
ATTRIBUTE_OF: dict[str, str] = {value: attribute for attribute, values in VALUES.items() for value in values}
"""Value word -> its attribute (the value sets are disjoint)."""
CREATURES = (
    "fox", "cat", "dog", "owl", "frog", "bear", "wolf", "deer", "duck", "goat", "mouse", "snake",
    "bat", "robin", "otter", "beaver", "lizard", "toad", "rabbit", "badger", "seal", "lion", "goose", "squirrel",
)

OPENERS = (
    "clearly ,", "of course ,", "trust me ,", "believe me ,", "without a doubt ,", "as an expert ,",
    "i am certain that", "everyone knows that", "it is well known that",
)
CLOSINGS = ("trust me", "believe me", "i am sure", "no doubt about it")
BOILERPLATE = OPENERS + tuple(f"{closing} ." for closing in CLOSINGS)
"""Every stock confident phrase, as it appears in a response (a closing with its full stop)."""

REQUESTS = ("tell me its {} :", "what are its {} ?")
GIVEN_SIZES = (3, 4)
"""The context gives 3 or 4 attributes (a 4-fact context and a 3-attribute request make the longest prompt: 16 words)."""
ASKED_SIZES = (2, 3)
"""A prompt asks for 2 or 3 of the given attributes (3 sentences fit the 16-word ceiling answer)."""
N_PROMPTS = 7200
PROMPT_SEED = 20240
PRONOUN = "it"
END = "."

_VERB_FORMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "colour": (("is",),), "size": (("is",),), "temper": (("is",),), "sound": ((),),
    "home": (("lives", "in"), ("is", "found", "in")), "food": (("eats",), ("feeds", "on")),
}
"""Each attribute's predicate forms (the words before the value); the first is the short one."""
PREDICATES: dict[tuple[str, ...], tuple[str, str]] = {
    (*form, value): (attribute, value)
    for attribute, forms in _VERB_FORMS.items() for form in forms for value in VALUES[attribute]
}
"""Predicate words -> (attribute, value)."""


def vocabulary() -> list[str]:
    """Every word of prompts and responses, sorted and without duplicates."""
    words = set(CREATURES) | set(ATTRIBUTES) | {"the", PRONOUN, END, ",", ":", "and"}
    for phrase in (*REQUESTS, *BOILERPLATE, *(" ".join(p) for p in PREDICATES)):
        words |= set(phrase.replace("{}", "").split())
    return sorted(words)


@dataclass(frozen=True)
class Question:
    """What a prompt gives and asks: the creature, its given ``(attribute, value)`` facts, the asked attributes."""

    creature: str
    given: tuple[tuple[str, str], ...]
    attributes: tuple[str, ...]

    def value(self, attribute: str) -> str | None:
        """The prompt's value of ``attribute`` (None if not given)."""
        return dict(self.given).get(attribute)


@dataclass(frozen=True)
class Statement:
    """One stated fact: ``creature``'s ``attribute`` is ``value``."""

    creature: str
    attribute: str
    value: str


@dataclass(frozen=True)
class Answer:
    """A parsed response: its statements in order and its number of boilerplate phrases."""

    statements: tuple[Statement, ...]
    boilerplate: int


def prompt_text(question: Question, request: str = REQUESTS[0]) -> str:
    """The prompt giving and asking ``question`` with the ``request`` template."""
    *first, last = question.attributes
    context = " ".join(value for _, value in question.given)
    return f"{question.creature} : {context} {END} " + request.format(f"{' , '.join(first)} and {last}")


def random_question(rng: random.Random) -> tuple[Question, str]:
    """A random question (uniform creature, given attributes, values and asked attributes) and its request."""
    given = sorted(rng.sample(range(len(ATTRIBUTES)), rng.choice(GIVEN_SIZES)))
    facts = tuple((ATTRIBUTES[i], rng.choice(VALUES[ATTRIBUTES[i]])) for i in given)
    asked = tuple(rng.sample([a for a, _ in facts], rng.choice(ASKED_SIZES)))
    return Question(rng.choice(CREATURES), facts, asked), rng.choice(REQUESTS)


@lru_cache(maxsize=1)
def _prompts() -> tuple[str, ...]:
    """The task's prompts: the first :data:`N_PROMPTS` distinct draws of a seeded sampler, in draw order."""
    rng, prompts = random.Random(PROMPT_SEED), {}
    while len(prompts) < N_PROMPTS:
        prompts.setdefault(prompt_text(*random_question(rng)))
    return tuple(prompts)


def all_prompts() -> list[str]:
    """Every prompt of the task (7200 seeded draws of 24 creatures x contexts x requests), in a fixed order."""
    return list(_prompts())


def _parse_attributes(words: list[str]) -> tuple[str, ...]:
    """The attributes of ``a and b`` or ``a , b and c``; ``ValueError`` otherwise."""
    attributes = tuple(words[::2])
    separators = [","] * (len(attributes) - 2) + ["and"]
    if len(attributes) not in ASKED_SIZES or words[1::2] != separators or not set(attributes) <= set(ATTRIBUTES):
        raise ValueError(f"bad request {' '.join(words)!r}")
    return attributes


@lru_cache(maxsize=1 << 14)
def parse_prompt(prompt: str) -> Question:
    """The question a prompt gives and asks; raise ``ValueError`` if it is not a prompt of the grammar."""
    words = prompt.split()
    if len(words) < 3 or words[0] not in CREATURES or words[1] != ":" or END not in words:
        raise ValueError(f"not a prompt of the task: {prompt!r}")
    stop = words.index(END)
    given = tuple((ATTRIBUTE_OF.get(value, ""), value) for value in words[2:stop])
    order = [ATTRIBUTES.index(a) if a in ATTRIBUTES else -1 for a, _ in given]
    if len(given) not in GIVEN_SIZES or min(order) < 0 or order != sorted(set(order)):
        raise ValueError(f"bad context in {prompt!r}")
    request = words[stop + 1:]
    templates = [t.split() for t in REQUESTS]
    template = next((t for t in templates if request[:3] == t[:3] and request[-1:] == t[-1:]), None)
    if template is None or len(request) < 5:
        raise ValueError(f"bad request in {prompt!r}")
    attributes = _parse_attributes(request[3:-1])
    if len(set(attributes)) != len(attributes) or not set(attributes) <= {a for a, _ in given}:
        raise ValueError(f"asks for attributes not given once in {prompt!r}")
    return Question(words[0], given, attributes)


def sentence(subject: str, attribute: str, value: str, long_form: bool = False) -> str:
    """The sentence stating a fact; ``subject`` is "it" or a creature, ``long_form`` picks "is found in"/"feeds on"."""
    forms = _VERB_FORMS[attribute]
    words = [PRONOUN] if subject == PRONOUN else ["the", subject]
    return " ".join([*words, *forms[min(int(long_form), len(forms) - 1)], value, END])


_OPENER_WORDS = tuple(tuple(opener.split()) for opener in OPENERS)
_CLOSING_WORDS = frozenset(tuple(closing.split()) for closing in CLOSINGS)


def _strip_opener(words: list[str]) -> tuple[list[str], int]:
    """``words`` without a leading opener, and 1 if there was one."""
    for opener in _OPENER_WORDS:
        if tuple(words[:len(opener)]) == opener:
            return words[len(opener):], 1
    return words, 0


def _statement(words: list[str], previous: str | None) -> Statement:
    """The statement of one sentence (without opener and full stop); ``previous`` resolves "it"."""
    if words[:1] == [PRONOUN] and previous is not None:
        creature, rest = previous, words[1:]
    elif len(words) >= 2 and words[0] == "the" and words[1] in CREATURES:
        creature, rest = words[1], words[2:]
    else:
        raise ValueError(f"bad subject in {' '.join(words)!r}")
    fact = PREDICATES.get(tuple(rest))
    if fact is None:
        raise ValueError(f"bad predicate in {' '.join(words)!r}")
    return Statement(creature, *fact)


@lru_cache(maxsize=1 << 16)
def parse_response(response: str) -> Answer:
    """Parse a response; raise ``ValueError`` if it is not well-formed."""
    words = response.split()
    if not words or words[-1] != END:
        raise ValueError("a response is sentences ending with a full stop")
    sentences = [list(group) for is_end, group in itertools.groupby(words, lambda w: w == END) if not is_end]
    if len(sentences) != words.count(END):
        raise ValueError("empty sentence")
    closing = len(sentences) > 1 and tuple(sentences[-1]) in _CLOSING_WORDS
    statements, boilerplate, previous = [], int(closing), None
    for words_of_sentence in sentences[:len(sentences) - closing]:
        rest, opener = _strip_opener(words_of_sentence)
        statement = _statement(rest, previous)
        statements.append(statement)
        boilerplate += opener
        previous = statement.creature
    return Answer(tuple(statements), boilerplate)


def is_well_formed(prompt: str, response: str) -> bool:
    """Whether ``prompt`` is a prompt of the grammar and ``response`` an answer of the grammar."""
    try:
        parse_prompt(prompt)
        parse_response(response)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- sampler
@dataclass(frozen=True)
class GeneratorConfig:
    """Probabilities of the mediocre assistant's answers.

    :param p_state: probability that an asked attribute is stated.
    :param p_correct: probability that a stated given attribute has the prompt's value (else a random other value).
    :param p_keep_order: probability that the asked order is kept (else the statements are shuffled).
    :param p_unasked: probability of a statement of an attribute that was not asked (given or not).
    :param p_other: probability of a statement about another creature.
    :param p_repeat: probability of restating an earlier statement.
    :param p_pronoun: probability that a sentence about the previous sentence's creature says "it".
    :param p_long_form: probability of "is found in" / "feeds on" over "lives in" / "eats".
    :param p_opener: probability that a sentence starts with an opener.
    :param p_closing: probability of a closing sentence.
    :param max_words: longest response (longer draws are redrawn).
    """

    p_state: float = 0.85
    p_correct: float = 0.7
    p_keep_order: float = 0.3
    p_unasked: float = 0.3
    p_other: float = 0.1
    p_repeat: float = 0.1
    p_pronoun: float = 0.5
    p_long_form: float = 0.5
    p_opener: float = 0.6
    p_closing: float = 0.45
    max_words: int = 28


class FactsGenerator:
    """Sampler of (prompt, answer) texts of a mediocre assistant (seeded through the ``rng`` passed in)."""

    def __init__(self, config: GeneratorConfig | None = None):
        self.config = config or GeneratorConfig()

    def value(self, rng: random.Random, question: Question, attribute: str) -> str:
        """The prompt's value with probability ``p_correct``, else (or if not given) a random other one."""
        given = question.value(attribute)
        if given is not None and rng.random() < self.config.p_correct:
            return given
        return rng.choice([v for v in VALUES[attribute] if v != given])

    def statements(self, rng: random.Random, question: Question) -> list[Statement]:
        """The facts the assistant states, in order (maybe none)."""
        c, creature = self.config, question.creature
        order = list(question.attributes)
        if rng.random() >= c.p_keep_order:
            rng.shuffle(order)
        facts = [Statement(creature, a, self.value(rng, question, a)) for a in order if rng.random() < c.p_state]
        if rng.random() < c.p_unasked:
            attribute = rng.choice([a for a in ATTRIBUTES if a not in question.attributes])
            facts.insert(rng.randint(0, len(facts)), Statement(creature, attribute, self.value(rng, question, attribute)))
        if rng.random() < c.p_other:
            other, attribute = rng.choice([x for x in CREATURES if x != creature]), rng.choice(ATTRIBUTES)
            facts.insert(rng.randint(0, len(facts)), Statement(other, attribute, rng.choice(VALUES[attribute])))
        if facts and rng.random() < c.p_repeat:
            facts.append(rng.choice(facts))
        return facts

    def render(self, rng: random.Random, facts: list[Statement]) -> str:
        """The response stating ``facts``, with pronouns, predicate forms and boilerplate drawn at random."""
        c, sentences, previous = self.config, [], None
        for fact in facts:
            pronoun = fact.creature == previous and rng.random() < c.p_pronoun
            subject = PRONOUN if pronoun else fact.creature
            text = sentence(subject, fact.attribute, fact.value, rng.random() < c.p_long_form)
            opener = [rng.choice(OPENERS)] if rng.random() < c.p_opener else []
            sentences.append(" ".join([*opener, text]))
            previous = fact.creature
        if rng.random() < c.p_closing:
            sentences.append(f"{rng.choice(CLOSINGS)} {END}")
        return " ".join(sentences)

    def sample(self, rng: random.Random) -> tuple[str, str]:
        """One ``(prompt, response)``: a uniform prompt and a non-empty answer of at most ``max_words`` words."""
        prompt = rng.choice(_prompts())
        question = parse_prompt(prompt)
        while True:
            facts = self.statements(rng, question)
            response = self.render(rng, facts) if facts else ""
            if facts and len(response.split()) <= self.config.max_words:
                return prompt, response
