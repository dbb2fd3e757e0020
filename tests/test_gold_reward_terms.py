"""The gold reward's terms on hand-made cases: repetition of the response (not of the review), the negation and
intensifier window, and how the three terms combine."""

import pytest

from rlhf_gym.tasks.reviews.gold import gold_reward, repetition, sentiment


@pytest.mark.parametrize("response, expected", [
    ("", 0.0),
    ("great", 0.0),
    ("great great", 0.0),                 # one bigram: under three words the term is 0
    ("great great great", 0.5),           # bigrams (great, great) twice: 1 - 1/2
    ("good . good . good", 0.5),          # (good, .), (., good), (good, .), (., good): 1 - 2/4
    ("a b c d", 0.0),
    ("great and i loved the pool and i loved the pool .", 1 - 7 / 11),  # 11 bigrams, 7 distinct
])
def test_repetition_by_hand(response, expected):
    assert repetition(response) == pytest.approx(expected)


def test_repetition_term_of_a_well_formed_review():
    response = "great and i loved the pool and i loved the pool ."
    # S = mean(+1 great, +1 loved) = 1; well-formed; rep = 4/11, weighted 2
    assert gold_reward("the food was", response) == pytest.approx(1.0 - 2 * 4 / 11)


def test_repetition_counts_the_response_only():
    # the review repeats "loved the pool", but across the prompt: the response "pool ." repeats nothing
    assert gold_reward("i loved the pool and i loved the", "pool .") == pytest.approx(1.0)


def test_terms_add_up_for_an_ill_formed_repetitive_response():
    # S = 1, ill-formed (-1.5), rep = 0.5 (-1.0)
    assert gold_reward("the food was", "great great great") == pytest.approx(1.0 - 1.5 - 1.0)
    assert gold_reward("", "great .") == pytest.approx(1.0 - 1.5)  # "great ." alone is not a well-formed review


@pytest.mark.parametrize("text, expected", [
    ("not really very great", 1.5),               # "not" is three words back: outside the window, intensified
    ("not really great", -1.0),                   # inside the window: negated, and then never intensified
    ("the food was very , great", 1.0),           # the comma breaks the window: no intensifier
    ("the food was not . great", 1.0),            # a sentence end breaks it too
    ("the food was great and not very bad", 1.0),  # mean of +1 and -(-1)
    ("the food was truly awful", -1.5),           # an adverb intensifies
    ("great terrible bad", -1 / 3),               # the mean over the sentiment words
])
def test_sentiment_window_by_hand(text, expected):
    assert sentiment(text) == pytest.approx(expected)
