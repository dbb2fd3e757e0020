import random

import pytest

from rlhf_gym.tasks.reviews.grammar import ReviewGrammar, is_well_formed, parse, vocabulary


@pytest.mark.parametrize("text", [
    "the food was great .",
    "the food was not very good , but i really loved the pizza !",
    "my room is dirty . i did not like the staff .",
    "our hotel seemed clean and the pool looked quite big .",
])
def test_well_formed_reviews(text):
    assert is_well_formed(text)


@pytest.mark.parametrize("text", [
    "",
    "the food was great",  # no end punctuation
    "the food was great great .",
    "great great great great",
    "the was food great .",
    "the food was great . .",
    "i did like the food .",  # "did" needs "not"
    "the food was not not good .",
    "the food was great , .",
    "the spaceship was great .",  # not in the vocabulary
])
def test_broken_reviews(text):
    assert not is_well_formed(text)


def test_parse_reports_negation_and_intensity():
    clauses = parse("the food was not good and i really hated the chef .")
    assert [(c.sentiment_word, c.negated, c.intensified) for c in clauses] == [("good", True, False), ("hated", False, True)]


def test_sampler_is_seeded_and_always_well_formed():
    grammar = ReviewGrammar()
    first = [grammar.sample(random.Random(7)) for _ in range(3)]
    assert first == [grammar.sample(random.Random(7)) for _ in range(3)]
    rng = random.Random(0)
    samples = [grammar.sample(rng) for _ in range(2000)]
    assert all(is_well_formed(f"{p} {r}") for p, r in samples)
    assert len({r for _, r in samples}) > 1500


def test_vocabulary_has_a_few_hundred_words():
    words = vocabulary()
    assert 200 <= len(words) <= 400
    assert len(words) == len(set(words))
