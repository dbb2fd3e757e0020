import pytest

from rlhf_gym.tasks.reviews.gold import gold_reward, repetition, sentiment

P = "the food was"


@pytest.mark.parametrize("response, expected", [
    ("great .", 1.0),                          # S = 1, well-formed, no repetition
    ("very great .", 1.5),                     # intensified
    ("not great .", -1.0),                     # negated
    ("not very great .", -1.0),                # negation wins over the intensifier
    ("terrible .", -1.0),
    ("not terrible .", 1.0),
    ("big .", 0.0),                            # neutral
    ("great but the chef was rude .", 0.0),    # mean of +1 and -1
    ("great and i really loved the pizza .", 1.25),
])
def test_well_formed_examples(response, expected):
    assert gold_reward(P, response) == pytest.approx(expected)


def test_repetition_is_punished():
    # S = 1 (four "great"), ill-formed (-1.5), rep = 1 - 1/3 of the three bigrams (-2 * 2/3)
    assert gold_reward(P, "great great great great") == pytest.approx(1 - 1.5 - 2 * (2 / 3))
    assert repetition("great great great great") == pytest.approx(2 / 3)
    assert repetition("great .") == 0.0


def test_word_salad_scores_below_any_positive_review():
    salad = gold_reward(P, "chair the was good .")
    assert salad == pytest.approx(1 - 1.5)
    assert salad < gold_reward(P, "good .")


def test_sentiment_ignores_negation_across_clauses():
    assert sentiment("the food was not bad , and i loved the chef .") == pytest.approx(1.0)
    assert sentiment("no sentiment words here") == 0.0
