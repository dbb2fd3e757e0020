"""A seeded probabilistic grammar of short English-like reviews, with a sampler and a checker.

The language (whitespace-separated words; punctuation is a word of its own)::

    review      := sentence{1..3}
    sentence    := clause ( connective clause ){0..2} end
    end         := "." | "!"
    connective  := [","] ( "and" | "but" | "yet" | "while" | "although" | "because" | "so" )
    clause      := subject copula adj_phrase
                 | "i" [adverb] verb_past object
                 | "i" "did" "not" verb_base object
    subject     := determiner noun          object := determiner noun
    adj_phrase  := ["not"] [intensifier] adjective

Adjectives and verbs carry a polarity in {-1, 0, +1}; ``not`` flips it. A prompt is a review opening
``determiner noun copula`` ("the pizza was"), so the response starts inside the first clause.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..parsing import WordCursor

DETERMINERS = ["the", "our", "my", "this", "that", "their", "every", "each"]
NOUNS = [
    # restaurants
    "food", "pizza", "pasta", "soup", "salad", "burger", "steak", "dessert", "coffee", "wine",
    "menu", "waiter", "waitress", "chef", "kitchen", "table", "service", "bread", "sauce", "portion",
    # films and books
    "movie", "film", "plot", "ending", "script", "actor", "soundtrack", "story", "book", "novel",
    "chapter", "author", "villain", "hero", "dialogue", "sequel", "cast", "director", "scene", "finale",
    # hotels and travel
    "hotel", "room", "bed", "pool", "lobby", "view", "staff", "breakfast", "shower", "balcony",
    "flight", "seat", "pilot", "crew", "airport", "train", "station", "tour", "guide", "beach",
    # products
    "phone", "screen", "battery", "camera", "laptop", "keyboard", "speaker", "charger", "app", "update",
    "jacket", "fabric", "zipper", "shoe", "watch", "strap", "lamp", "chair", "desk", "blender",
]
COPULAS = ["was", "is", "seemed", "felt", "looked", "proved", "remained", "became"]
POSITIVE_ADJECTIVES = [
    "good", "great", "excellent", "wonderful", "delicious", "lovely", "superb", "fantastic",
    "brilliant", "charming", "pleasant", "friendly", "fresh", "clean", "comfortable", "stunning",
    "perfect", "delightful", "impressive", "elegant", "tasty", "generous", "helpful", "gorgeous",
    "reliable", "smooth", "sturdy", "cozy", "warm", "vivid", "clever", "gripping", "moving",
    "polished", "spotless", "fast", "solid", "memorable", "satisfying", "beautiful",
]
NEGATIVE_ADJECTIVES = [
    "bad", "awful", "terrible", "horrible", "bland", "rude", "dirty", "stale", "boring", "dull",
    "noisy", "cramped", "greasy", "soggy", "broken", "flimsy", "slow", "cold", "overpriced",
    "disappointing", "mediocre", "clumsy", "confusing", "tedious", "shabby", "smelly", "sloppy",
    "unpleasant", "weak", "painful", "forgettable", "grim", "messy", "buggy", "faulty", "cheap",
    "annoying", "ugly", "tasteless", "dreadful",
]
NEUTRAL_ADJECTIVES = [
    "big", "small", "long", "short", "new", "old", "simple", "quiet", "typical", "modern",
    "plain", "busy", "unusual", "ordinary", "different", "familiar", "dark", "bright", "loud", "light",
]
INTENSIFIERS = ["very", "really", "quite", "extremely", "so", "truly", "incredibly", "remarkably", "fairly", "rather"]
ADVERBS = ["really", "truly", "honestly", "absolutely", "genuinely", "simply"]
POSITIVE_VERBS = {"loved": "love", "liked": "like", "enjoyed": "enjoy", "adored": "adore",
                  "appreciated": "appreciate", "admired": "admire", "recommend": "recommend"}
NEGATIVE_VERBS = {"hated": "hate", "disliked": "dislike", "regretted": "regret", "despised": "despise",
                  "resented": "resent", "loathed": "loathe", "avoided": "avoid"}
NEUTRAL_VERBS = {"noticed": "notice", "saw": "see", "tried": "try", "visited": "visit", "used": "use"}
CONNECTIVES = ["and", "but", "yet", "while", "although", "because", "so"]
ENDINGS = [".", "!"]
COMMA = ","
NEGATION = "not"

ADJECTIVE_POLARITY: dict[str, int] = {
    **{w: 1 for w in POSITIVE_ADJECTIVES}, **{w: -1 for w in NEGATIVE_ADJECTIVES}, **{w: 0 for w in NEUTRAL_ADJECTIVES}
}
VERB_PAST_POLARITY: dict[str, int] = {
    **{w: 1 for w in POSITIVE_VERBS}, **{w: -1 for w in NEGATIVE_VERBS}, **{w: 0 for w in NEUTRAL_VERBS}
}
VERB_BASE_POLARITY: dict[str, int] = {
    **{b: 1 for b in POSITIVE_VERBS.values()}, **{b: -1 for b in NEGATIVE_VERBS.values()},
    **{b: 0 for b in NEUTRAL_VERBS.values()},
}
SENTIMENT_POLARITY: dict[str, int] = {**ADJECTIVE_POLARITY, **VERB_PAST_POLARITY, **VERB_BASE_POLARITY}


def vocabulary() -> list[str]:
    """Every word of the language, sorted and without duplicates."""
    words = set(DETERMINERS + NOUNS + COPULAS + INTENSIFIERS + ADVERBS + CONNECTIVES + ENDINGS)
    words |= set(ADJECTIVE_POLARITY) | set(VERB_PAST_POLARITY) | set(VERB_BASE_POLARITY)
    words |= {COMMA, NEGATION, "i", "did"}
    return sorted(words)


@dataclass(frozen=True)
class GrammarConfig:
    """Probabilities of the review sampler.

    :param p_positive: probability that a clause is positive (before negation).
    :param p_negative: probability that a clause is negative (the rest is neutral).
    :param p_negation: probability that a clause is negated with ``not``.
    :param p_intensifier: probability of an intensifier (or adverb) in a clause.
    :param p_i_clause: probability that a non-initial clause is an "i ..." clause.
    :param max_sentences: a review has 1..max_sentences sentences.
    :param max_clauses: a sentence has 1..max_clauses clauses.
    """

    p_positive: float = 0.4
    p_negative: float = 0.4
    p_negation: float = 0.2
    p_intensifier: float = 0.3
    p_i_clause: float = 0.3
    max_sentences: int = 2
    max_clauses: int = 2


class ReviewGrammar:
    """Sampler of reviews from the grammar above (seeded through the ``rng`` passed in)."""

    def __init__(self, config: GrammarConfig | None = None):
        self.config = config or GrammarConfig()

    def _polarity(self, rng: random.Random) -> int:
        u = rng.random()
        if u < self.config.p_positive:
            return 1
        return -1 if u < self.config.p_positive + self.config.p_negative else 0

    def _pick_adjective(self, rng: random.Random, polarity: int) -> str:
        pool = {1: POSITIVE_ADJECTIVES, -1: NEGATIVE_ADJECTIVES, 0: NEUTRAL_ADJECTIVES}[polarity]
        return rng.choice(pool)

    def adjective_phrase(self, rng: random.Random) -> list[str]:
        words = []
        if rng.random() < self.config.p_negation:
            words.append(NEGATION)
        if rng.random() < self.config.p_intensifier:
            words.append(rng.choice(INTENSIFIERS))
        words.append(self._pick_adjective(rng, self._polarity(rng)))
        return words

    def opening(self, rng: random.Random) -> list[str]:
        """``determiner noun copula``: the prompt part of a review."""
        return [rng.choice(DETERMINERS), rng.choice(NOUNS), rng.choice(COPULAS)]

    def clause(self, rng: random.Random) -> list[str]:
        if rng.random() >= self.config.p_i_clause:
            return self.opening(rng) + self.adjective_phrase(rng)
        polarity = self._polarity(rng)
        verbs = {1: POSITIVE_VERBS, -1: NEGATIVE_VERBS, 0: NEUTRAL_VERBS}[polarity]
        past = rng.choice(sorted(verbs))
        obj = [rng.choice(DETERMINERS), rng.choice(NOUNS)]
        if rng.random() < self.config.p_negation:
            return ["i", "did", NEGATION, verbs[past], *obj]
        adverb = [rng.choice(ADVERBS)] if rng.random() < self.config.p_intensifier else []
        return ["i", *adverb, past, *obj]

    def connective(self, rng: random.Random) -> list[str]:
        comma = [COMMA] if rng.random() < 0.4 else []
        return [*comma, rng.choice(CONNECTIVES)]

    def continuation(self, rng: random.Random) -> list[str]:
        """The rest of a review that starts with an opening: adjective phrase, more clauses, sentences."""
        words = self.adjective_phrase(rng)
        n_sentences = rng.randint(1, self.config.max_sentences)
        for s in range(n_sentences):
            if s > 0:
                words += self.clause(rng)
            for _ in range(rng.randint(1, self.config.max_clauses) - 1):
                words += self.connective(rng) + self.clause(rng)
            words.append(rng.choice(ENDINGS))
        return words

    def sample(self, rng: random.Random) -> tuple[str, str]:
        """One review as ``(prompt, response)`` text; the response ends with end punctuation."""
        return " ".join(self.opening(rng)), " ".join(self.continuation(rng))


# ----------------------------------------------------------------------------------------------- checker
@dataclass(frozen=True)
class Clause:
    """A parsed clause: its sentiment word, and whether it is negated or intensified."""

    sentiment_word: str
    negated: bool
    intensified: bool


class _Parser(WordCursor):
    """Recursive-descent parser of the grammar; raises ``ValueError`` at the first bad word."""

    def clause(self) -> Clause:
        if self.peek() == "i":
            self.i += 1
            if self.peek() == "did":
                self.i += 1
                self.take({NEGATION})
                verb = self.take(VERB_BASE_POLARITY)
                negated, intensified = True, False
            else:
                intensified = self.peek() in ADVERBS
                if intensified:
                    self.i += 1
                verb, negated = self.take(VERB_PAST_POLARITY), False
            self.take(DETERMINERS)
            self.take(NOUNS)
            return Clause(verb, negated, intensified)
        self.take(DETERMINERS)
        self.take(NOUNS)
        self.take(COPULAS)
        negated = self.peek() == NEGATION
        if negated:
            self.i += 1
        intensified = self.peek() in INTENSIFIERS
        if intensified:
            self.i += 1
        return Clause(self.take(ADJECTIVE_POLARITY), negated, intensified)

    def review(self) -> list[Clause]:
        clauses = []
        while True:
            clauses.append(self.clause())
            word = self.peek()
            if word in ENDINGS:
                self.i += 1
                if self.peek() is None:
                    return clauses
                continue
            if word == COMMA:
                self.i += 1
            self.take(CONNECTIVES)


def parse(text: str) -> list[Clause]:
    """Parse a whole review (prompt and response joined); raise ``ValueError`` if it is not well-formed."""
    return _Parser(text.split()).review()


def is_well_formed(text: str) -> bool:
    """Whether ``text`` is a complete review of the grammar."""
    try:
        parse(text)
    except ValueError:
        return False
    return True
