"""The describe task's content-error families, on hand-made cases: profiles and gold terms counted by hand, the exact
edits (or every possible edit) of small responses, and None where an edit has no place or the response is ill-formed."""

import random
from collections import Counter

import pytest

from rlhf_gym.tasks.describe.counterfactuals import (
    add_negated_property, add_unaddressed_property, add_wrong_property, content_profile, gold_terms, move_negation,
)
from rlhf_gym.tasks.describe.gold import OTHER_NOUN, REPEATED, UNADDRESSED, UNREQUESTED, echo, gold_reward
from rlhf_gym.tasks.describe.grammar import ADJECTIVES, NOUNS, PROPERTY
from rlhf_gym.tasks.describe.task import WORLD

P = "describe the soup as hot and cheap but not sweet :"
CEILING = "it is hot . it is cheap . it is sour ."
EDITS = (add_negated_property, add_wrong_property, add_unaddressed_property)
SEEDS = range(600)
HOT, CHEAP, SWEET, LOUD, FRESH = (PROPERTY[a] for a in ("hot", "cheap", "sweet", "loud", "fresh"))
TERM_VALUE = {"unrequested": UNREQUESTED, "repeat": REPEATED, "other": OTHER_NOUN, "missing": UNADDRESSED}


def profile(negated: int, wrong: int, unaddressed: int) -> dict[str, int]:
    return {"negated_property": negated, "wrong_property": wrong, "unaddressed_property": unaddressed}


def every_edit(edit, prompt: str, response: str) -> set[str | None]:
    return {edit(prompt, response, random.Random(seed)) for seed in SEEDS}


def test_world_wiring():
    assert WORLD.content_errors == {"negated_property": add_negated_property, "wrong_property": add_wrong_property,
                                    "unaddressed_property": add_unaddressed_property}
    assert WORLD.content_profile is content_profile
    assert WORLD.contrasts == {"negation_move": move_negation}


@pytest.mark.parametrize(("response", "expected"), [
    (CEILING, profile(0, 0, 0)),
    ("the soup is hot . it is cheap . it is not sweet .", profile(0, 0, 0)),
    ("the soup is not cold . it is cheap . it is sour .", profile(0, 0, 0)),  # a hedge is said the right way round
    ("the soup is hot . the soup is cheap . the soup is sweet .", profile(1, 0, 0)),  # the request's "not" dropped
    ("the soup is cold . it is not cheap . it is not sour .", profile(3, 0, 0)),  # -1, -1 and -0.5: all wrong
    ("the soup is hot .", profile(0, 0, 2)),
    ("the lamp is hot . it is cheap . the soup is not sweet .", profile(0, 2, 0)),  # "it" is the lamp
    ("the tea is hot . the soup is cheap .", profile(0, 1, 1)),  # hot said of the tea only, sweet of no noun
    ("the tea is hot . the lamp is cold . the soup is cheap .", profile(0, 1, 1)),  # one property, two other nouns
    ("the soup is hot . the tea is hot . it is cheap . the soup is sour .", profile(0, 1, 0)),  # cheap: the tea's
    ("the soup is hot . the tea is hot . the soup is cheap . it is sour .", profile(0, 0, 0)),  # hot said of both
    ("the soup is hot . it is not hot . it is cheap . it is not sweet .", profile(0, 0, 0)),  # a repeat: padding
    ("the soup is hot . it is cheap . it is not sweet . it is fresh .", profile(0, 0, 0)),  # unrequested: padding
    ("the soup is sweet . it is not sweet . the tea is hot .", profile(1, 1, 1)),  # only the first claim counts
    ("the soup is hot and", profile(0, 0, 0)),  # ill-formed: no claim to count
    ("", profile(0, 0, 0)),
])
def test_profile_by_hand(response, expected):
    assert content_profile(P, response) == expected


def test_profile_of_a_foreign_prompt_is_an_error():
    with pytest.raises(ValueError):
        content_profile("describe the soup as hot and cold but not sweet :", CEILING)


@pytest.mark.parametrize(("response", "expected"), [
    (CEILING, {("claim", HOT, 1.0): 1, ("claim", CHEAP, 1.0): 1, ("claim", SWEET, 1.0): 1}),
    ("the soup is not cold . it is loud . it is loud . the tea is sweet .",
     {("claim", HOT, 0.5): 1, ("unrequested", LOUD): 1, ("repeat",): 1, ("other",): 1, ("missing", CHEAP): 1,
      ("missing", SWEET): 1}),
    ("it is fresh . it is not stale . it is very sweet .",
     {("unrequested", FRESH): 1, ("repeat",): 1, ("claim", SWEET, -1.0): 1, ("missing", HOT): 1,
      ("missing", CHEAP): 1}),
])
def test_gold_terms_by_hand(response, expected):
    assert gold_terms(P, response) == Counter(expected)


def test_gold_terms_add_up_to_gold_on_generator_samples():
    rng = random.Random(7)
    for _ in range(500):
        prompt, response = WORLD.sample_text(rng)
        terms = gold_terms(prompt, response)
        total = sum(n * (term[2] if term[0] == "claim" else TERM_VALUE[term[0]]) for term, n in terms.items())
        assert total / 3 == pytest.approx(gold_reward(prompt, response)), (prompt, response)
        # gold's missing properties are the wrong_property and the unaddressed_property ones, each once
        counts = content_profile(prompt, response)
        assert counts["wrong_property"] + counts["unaddressed_property"] == sum(
            n for term, n in terms.items() if term[0] == "missing"), (prompt, response)


# ----------------------------------------------------------------------------------------------- negated_property
def test_negated_property_every_edit():
    # hot, cheap and "not sweet" all said right: each place has one edit with no form change elsewhere, but cheap,
    # whose "not" takes the "very" of hot ("very hot" -> "not hot" is the in-place one at hot; "not sweet" ->
    # "very sweet" at sweet)
    response = "the soup is very hot . it is cheap . it is not sweet ."
    assert every_edit(add_negated_property, P, response) == {
        "the soup is not hot . it is cheap . it is not sweet .",
        "the soup is hot . it is not cheap . it is not sweet .",
        "the soup is very hot . it is cheap . it is very sweet .",
    }
    assert add_negated_property(P, response, random.Random(0)) == "the soup is hot . it is not cheap . it is not sweet ."
    assert add_negated_property(P, response, random.Random(1)) == "the soup is not hot . it is cheap . it is not sweet ."


def test_negated_property_makes_up_for_the_echo_with_form():
    # "sour" -> "sweet" echoes one word more: "the soup" -> "it" gives it back, "very" somewhere the word back;
    # "not hot" or "not cheap" would need a word less, "cold" or "expensive" an echo more, which no form gives
    response = "the soup is hot . it is cheap . it is sour ."
    assert every_edit(add_negated_property, P, response) == {
        "it is very hot . it is cheap . it is sweet .",
        "it is hot . it is very cheap . it is sweet .",
        "it is hot . it is cheap . it is very sweet .",
    }


def test_negated_property_has_no_place_where_nothing_is_said_right():
    assert add_negated_property(P, "the soup is cold . it is expensive .", random.Random(0)) is None


def test_negated_property_has_no_place_in_the_ceiling_answer():
    # 12 words: three plain "it" clauses; a flip moves the echo by one and no form can give it back
    assert every_edit(add_negated_property, P, CEILING) == {None}


# ----------------------------------------------------------------------------------------------- wrong_property
OTHER_NOUNS = [noun for noun in NOUNS if noun != "soup"]


def test_wrong_property_every_edit():
    # 15 words, echo 4 (hot soup cheap sweet). Each right claim can move: hot ("it" -> "the car": a word more, "very"
    # gives it back), cheap ("the soup" -> "the car": an echo less; the "it" after it becomes "the soup", a word and an
    # echo more; "very" gives the word back) and "not sweet" (a word more, "very" gives it back): two form changes each
    response = "it is very hot . the soup is cheap . it is not sweet ."
    assert every_edit(add_wrong_property, P, response) == {
        edit for noun in OTHER_NOUNS for edit in (f"the {noun} is hot . the soup is cheap . it is not sweet .",
                                                  f"it is hot . the {noun} is cheap . the soup is not sweet .",
                                                  f"it is hot . the soup is cheap . the {noun} is not sweet .")}
    edited = add_wrong_property(P, response, random.Random(0))
    assert edited == "it is hot . the book is cheap . the soup is not sweet ."
    assert gold_reward(P, response) == pytest.approx(1) and gold_reward(P, edited) == pytest.approx(1 / 3)
    assert content_profile(P, edited) == profile(0, 1, 0)
    assert gold_terms(P, edited) - gold_terms(P, response) == Counter({("other",): 1, ("missing", CHEAP): 1})


def test_wrong_property_of_a_ceiling_answer_says_the_other_pole():
    # bias_probe(P, 1): the moved claim "the car is sour" needs a word less; "the soup" -> "it" gives it, and an echo
    # less, which the claim about the car gives back by saying "sweet" (gold does not read what is said of another
    # noun). Moving hot or cheap leaves the answer a word too long, and the 12-word ceiling has no room at all: a
    # clause about another noun after clauses about the soup takes 5 words
    ceiling = "the soup is hot . it is cheap . it is sour ."
    assert every_edit(add_wrong_property, P, ceiling) == {f"it is hot . it is cheap . the {noun} is sweet ."
                                                          for noun in OTHER_NOUNS}
    assert content_profile(P, "it is hot . it is cheap . the car is sweet .") == profile(0, 1, 0)
    assert every_edit(add_wrong_property, P, CEILING) == {None}


def test_wrong_property_moves_a_claim_to_the_noun_before_as_it():
    # to the lamp, hot moves as "it is hot" (a word and an echo less) and "it is cheap" becomes "the soup is cheap";
    # to any other noun it would be a word too long. Sour moves to any noun saying "sweet" (the echo of "the soup").
    # "loud" is about the lamp already: no place
    response = "the lamp is loud . the soup is hot . it is cheap . the soup is sour ."
    assert every_edit(add_wrong_property, P, response) == {
        "the lamp is loud . it is hot . the soup is cheap . the soup is sour .",
        *(f"the lamp is loud . the soup is hot . it is cheap . the {noun} is sweet ." for noun in OTHER_NOUNS)}
    assert gold_reward(P, response) == pytest.approx(2.5 / 3)
    assert gold_reward(P, "the lamp is loud . it is hot . the soup is cheap . the soup is sour .") == pytest.approx(0.5 / 3)


def test_wrong_property_needs_a_right_claim_said_once():
    assert add_wrong_property(P, "the soup is cold . it is expensive .", random.Random(0)) is None  # nothing right
    # hot said twice: moving the first makes the second the first claim, and nothing would be wrong
    assert add_wrong_property(P, "the soup is very hot . it is hot .", random.Random(0)) is None
    # a wrong claim (cold) does not move: negated_property would fall by one
    response = "the soup is very cold . it is cheap . it is not sweet ."
    assert all(" cold " in edited for edited in every_edit(add_wrong_property, P, response) - {None})
    assert every_edit(add_wrong_property, P, response) != {None}


# ----------------------------------------------------------------------------------------------- unaddressed_property
def test_unaddressed_property_every_edit_of_the_ceiling_answer():
    # only "sour" echoes nothing, as an unrequested adjective does not; hot or cheap would leave an echo short
    unrequested = [a for a in ADJECTIVES if PROPERTY[a] not in (HOT, CHEAP, SWEET)]
    assert len(unrequested) == 14
    assert every_edit(add_unaddressed_property, P, CEILING) == {f"it is hot . it is cheap . it is {a} ."
                                                                for a in unrequested}
    assert add_unaddressed_property(P, CEILING, random.Random(0)) == "it is hot . it is cheap . it is new ."
    assert gold_reward(P, "it is hot . it is cheap . it is new .") == pytest.approx(1.25 / 3)


def test_unaddressed_property_takes_an_unrequested_property_not_spoken_about():
    # hot is said twice (no place), sweet is never spoken about: cheap is the only place, and gives way to any
    # unrequested adjective but fresh/stale (spoken about). "very cheap" has 5 words and 1 echo; "very loud" would
    # echo nothing, and with no other "very" to drop the fewest form changes (2) are "the soup is loud" in its place,
    # or "it is loud" and one earlier "it" -> "the soup"
    response = "the soup is hot . it is hot . it is fresh . it is very cheap ."
    free = [a for a in ADJECTIVES if PROPERTY[a] not in (HOT, CHEAP, SWEET, FRESH)]
    assert len(free) == 12
    assert every_edit(add_unaddressed_property, P, response) == {
        edit for a in free for edit in (f"the soup is hot . it is hot . it is fresh . the soup is {a} .",
                                        f"the soup is hot . the soup is hot . it is fresh . it is {a} .",
                                        f"the soup is hot . it is hot . the soup is fresh . it is {a} .")}
    assert content_profile(P, response) == profile(0, 0, 1)
    assert content_profile(P, add_unaddressed_property(P, response, random.Random(0))) == profile(0, 0, 2)


def test_unaddressed_property_leaves_a_property_said_of_another_noun():
    # hot is said of the tea too: replacing the soup's claim would make it a wrong_property; cheap is the only place
    # ("it is cheap" -> "the soup is <unrequested>", a word more, with "very" dropped; or "it is very hot" -> "the
    # soup is hot", an echo more, at the same length)
    response = "it is very hot . it is cheap . the tea is hot ."
    free = [a for a in ADJECTIVES if PROPERTY[a] not in (HOT, CHEAP, SWEET)]
    assert every_edit(add_unaddressed_property, P, response) == {
        edit for a in free for edit in (f"it is hot . the soup is {a} . the tea is hot .",
                                        f"the soup is hot . it is {a} . the tea is hot .")}
    assert content_profile(P, response) == profile(0, 0, 1)
    assert content_profile(P, "it is hot . the soup is new . the tea is hot .") == profile(0, 0, 2)


def test_unaddressed_property_has_no_place_without_a_right_claim_said_once():
    assert add_unaddressed_property(P, "the soup is cold . it is expensive .", random.Random(0)) is None
    assert add_unaddressed_property(P, "it is hot . it is hot .", random.Random(0)) is None


# ----------------------------------------------------------------------------------------------- every family
@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("response", ["the soup is hot and", "hot cheap not sweet", "", "it is very not hot ."])
def test_an_ill_formed_response_has_no_edit(edit, response):
    assert edit(P, response, random.Random(0)) is None


@pytest.mark.parametrize(("edit", "moved"), [
    (add_negated_property, lambda gone, added: gone[0] == "claim" and gone[2] > 0 and len(added) == 1
     and added[0][:2] == gone[:2] and added[0][2] < 0),
    (add_wrong_property, lambda gone, added: gone[0] == "claim" and gone[2] > 0
     and added == [("missing", gone[1]), ("other",)]),
    (add_unaddressed_property, lambda gone, added: gone[0] == "claim" and gone[2] > 0
     and [a[0] for a in added] == ["missing", "unrequested"] and added[0][1] == gone[1]),
])
def test_an_edit_moves_gold_terms_as_documented(edit, moved):
    rng, applied = random.Random(3), 0
    for i in range(300):
        prompt, response = WORLD.sample_text(rng)
        edited = edit(prompt, response, random.Random(i))
        if edited is None:
            continue
        applied += 1
        before, after = gold_terms(prompt, response), gold_terms(prompt, edited)
        gone, added = list((before - after).elements()), sorted((after - before).elements())
        assert len(gone) == 1 and moved(gone[0], added), (prompt, response, edited)
        assert echo(prompt, edited) == echo(prompt, response)
        assert len(edited.split()) == len(response.split())
    assert applied >= 60


def test_move_negation_every_move_by_hand():
    # "not" leaves "sweet" (unwanted: right) for "hot" (wanted: right), which keeps "very"'s place: both turn wrong;
    # or for "cheap": "very cheap" -> "not cheap" and "not sweet" -> "very sweet"
    response = "the soup is very hot . it is cheap . it is not sweet ."
    moves = every_edit(move_negation, P, response)
    assert moves == {"the soup is not hot . it is cheap . it is very sweet .",
                     "the soup is very hot . it is not cheap . it is sweet ."}
    for moved in moves:  # gold by hand: 1 -> -1/3 (two requested claims wrong)
        assert gold_reward(P, response) == 1 and gold_reward(P, moved) == pytest.approx(-1 / 3)
    # a move that makes the response better is a contrast too (-1/3 -> 1); moving "not" from "hot" to "cheap" leaves
    # gold at -1/3 (one wanted claim wrong either way): no contrast
    assert every_edit(move_negation, P, "it is not hot . it is cheap . it is sweet .") == {
        "it is hot . it is cheap . it is not sweet ."}


@pytest.mark.parametrize("response", [
    "it is hot . it is cheap .",                    # no negation to move
    "it is not hot . it is not cheap .",            # no clause without one
    "it is not loud . it is quiet .",               # unrequested property: gold the same either way
    "the soup is hot and",                          # ill-formed
])
def test_move_negation_has_no_place(response):
    assert move_negation(P, response, random.Random(0)) is None
