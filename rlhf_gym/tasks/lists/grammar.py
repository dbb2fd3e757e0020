"""The language of the lists task: requests for k members of a category, answered by a list; sampler and checker.

The language (whitespace-separated words; punctuation is a word of its own)::

    prompt     := "list" number category [ "but" "not" member [ "or" member ] ] ":"
    number     := "two" | "three" | "four" | "five" | "six"           (k = 2..6)
    category   := "fruits" | "colours" | ... (12 plural names, 13 members each)
    response   := member ( "," member )* [ "and" member ] "."

Every member word belongs to exactly one category; a response's items are its member words. The prompts are
every category x number x choice of zero, one or two excluded members (12 x 5 x 92 = 5520).

The generator imitates a mediocre assistant: it seldom names exactly k items (3%; about 63% of its lists are too
long, 34% too short), sometimes names a member of another category, ignores the exclusions (it even echoes the
excluded members now and then) and samples with replacement, so repeats happen.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import cache, cached_property

CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": ("apple", "pear", "plum", "peach", "cherry", "mango", "lemon", "banana", "grape", "kiwi", "melon",
               "apricot", "fig"),
    "colours": ("red", "blue", "green", "yellow", "purple", "pink", "brown", "black", "white", "grey", "violet",
                "teal", "beige"),
    "animals": ("dog", "cat", "horse", "cow", "sheep", "goat", "pig", "lion", "tiger", "bear", "wolf", "fox",
                "rabbit"),
    "tools": ("hammer", "saw", "drill", "wrench", "chisel", "pliers", "shovel", "rake", "axe", "screwdriver",
              "trowel", "mallet", "crowbar"),
    "drinks": ("tea", "coffee", "milk", "juice", "water", "soda", "beer", "wine", "cocoa", "lemonade", "cider",
               "smoothie", "espresso"),
    "instruments": ("piano", "guitar", "violin", "drum", "flute", "trumpet", "cello", "harp", "clarinet",
                    "saxophone", "banjo", "oboe", "tuba"),
    "sports": ("tennis", "football", "golf", "rugby", "hockey", "cricket", "baseball", "boxing", "rowing",
               "cycling", "skiing", "volleyball", "basketball"),
    "metals": ("iron", "copper", "gold", "silver", "tin", "zinc", "lead", "nickel", "platinum", "aluminium",
               "titanium", "cobalt", "chromium"),
    "birds": ("robin", "sparrow", "eagle", "owl", "crow", "parrot", "pigeon", "swan", "duck", "hawk", "falcon",
              "penguin", "heron"),
    "flowers": ("rose", "tulip", "daisy", "lily", "orchid", "poppy", "sunflower", "daffodil", "lavender", "iris",
                "peony", "jasmine", "carnation"),
    "vegetables": ("carrot", "potato", "onion", "cabbage", "spinach", "pea", "bean", "leek", "turnip", "celery",
                   "broccoli", "lettuce", "cucumber"),
    "trees": ("oak", "pine", "birch", "maple", "willow", "elm", "ash", "cedar", "beech", "yew", "spruce", "fir",
              "poplar"),
}
CATEGORY_OF: dict[str, str] = {member: category for category, members in CATEGORIES.items() for member in members}
NUMBERS: dict[str, int] = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
LIST, BUT, NOT, OR, COLON = "list", "but", "not", "or", ":"
COMMA, AND, STOP = ",", "and", "."
MAX_EXCLUDED = 2


def vocabulary() -> list[str]:
    """Every word of the language, sorted and without duplicates."""
    return sorted({*CATEGORIES, *CATEGORY_OF, *NUMBERS, LIST, BUT, NOT, OR, COLON, COMMA, AND, STOP})


@dataclass(frozen=True)
class Request:
    """What a prompt asks for: ``k`` distinct members of ``category``, none of ``excluded``."""

    category: str
    k: int
    excluded: tuple[str, ...] = ()

    @cached_property
    def valid(self) -> frozenset[str]:
        """The items that belong in the answer: members of the category that are not excluded."""
        return frozenset(CATEGORIES[self.category]) - set(self.excluded)


def prompt_text(category: str, number: str, excluded: tuple[str, ...] = ()) -> str:
    """``list <number> <category> [but not <m1> [or <m2>]] :``."""
    exclusion = [BUT, NOT, *" or ".join(excluded).split()] if excluded else []
    return " ".join([LIST, number, category, *exclusion, COLON])


@cache
def _prompts() -> tuple[str, ...]:
    return tuple(
        prompt_text(category, number, excluded)
        for category, members in CATEGORIES.items()
        for number in NUMBERS
        for n_excluded in range(MAX_EXCLUDED + 1)
        for excluded in itertools.combinations(members, n_excluded)
    )


def all_prompts() -> list[str]:
    """Every prompt (5520), in a fixed order: category, then number, then the excluded members (none, one, two)."""
    return list(_prompts())


@cache
def _prompt_set() -> frozenset[str]:
    return frozenset(_prompts())


@cache
def parse_prompt(prompt: str) -> Request:
    """The request a prompt of :func:`all_prompts` makes; ``ValueError`` for any other text."""
    if prompt not in _prompt_set():
        raise ValueError(f"not a lists prompt: {prompt!r}")
    words = prompt.split()
    return Request(words[2], NUMBERS[words[1]], tuple(words[5:-1:2]))


def items(response: str) -> list[str]:
    """The response's items: its member words, in order (also for an ill-formed response)."""
    return [word for word in response.split() if word in CATEGORY_OF]


def is_list(response: str) -> bool:
    """Whether ``response`` is ``member ( , member )* [ and member ] .``."""
    words = response.split()
    if len(words) < 2 or words[-1] != STOP:
        return False
    body = words[:-1]
    separators = body[1::2]
    return (all(word in CATEGORY_OF for word in body[::2]) and len(body) % 2 == 1
            and all(word == COMMA for word in separators[:-1]) and separators[-1:] in ([], [COMMA], [AND]))


def is_well_formed(prompt: str, response: str) -> bool:
    """Whether ``prompt`` is a request of the language and ``response`` a list."""
    try:
        parse_prompt(prompt)
    except ValueError:
        return False
    return is_list(response)


def list_text(members: list[str], final_and: bool = True) -> str:
    """``a , b and c .`` (or ``a , b , c .`` without the final ``and``)."""
    if final_and and len(members) > 1:
        return " , ".join(members[:-1]) + f" {AND} {members[-1]} {STOP}"
    return " , ".join(members) + f" {STOP}"


@dataclass(frozen=True)
class GeneratorConfig:
    """Probabilities of the mediocre assistant.

    :param p_exact: probability that it names exactly k items.
    :param p_longer: probability that a wrong count is too long (the rest are too short).
    :param max_offset: a wrong count is off by 1..max_offset items (clipped to 1..max_items).
    :param max_items: the most items it names.
    :param p_echo: probability that an item is one of the excluded members (when the prompt excludes some).
    :param p_on_topic: probability that any other item is from the requested category (excluded members included).
    :param p_final_and: probability that a list of two or more ends with ``and``.
    """

    p_exact: float = 0.02
    p_longer: float = 0.25
    max_offset: int = 2
    max_items: int = 8
    p_echo: float = 0.05
    p_on_topic: float = 0.95
    p_final_and: float = 0.7


class ListGenerator:
    """Sampler of ``(prompt, response)`` texts (seeded through the ``rng`` passed in)."""

    def __init__(self, config: GeneratorConfig | None = None):
        self.config = config or GeneratorConfig()

    def count(self, rng: random.Random, k: int) -> int:
        """How many items it names for a request of ``k``."""
        if rng.random() < self.config.p_exact:
            return k
        offset = rng.randint(1, self.config.max_offset)
        sign = 1 if rng.random() < self.config.p_longer else -1
        return min(max(k + sign * offset, 1), self.config.max_items)

    def item(self, rng: random.Random, request: Request) -> str:
        """One item: an echoed exclusion, a member of the category (exclusions ignored) or of another one."""
        if request.excluded and rng.random() < self.config.p_echo:
            return rng.choice(request.excluded)
        if rng.random() < self.config.p_on_topic:
            return rng.choice(CATEGORIES[request.category])
        return rng.choice(CATEGORIES[rng.choice([c for c in CATEGORIES if c != request.category])])

    def response(self, rng: random.Random, request: Request) -> str:
        members = [self.item(rng, request) for _ in range(self.count(rng, request.k))]
        return list_text(members, final_and=rng.random() < self.config.p_final_and)

    def sample(self, rng: random.Random) -> tuple[str, str]:
        """One request (uniform over :func:`all_prompts`) and the assistant's list."""
        prompt = rng.choice(_prompts())
        return prompt, self.response(rng, parse_prompt(prompt))
