"""The facts task's content-error families on hand-made cases: profiles, the possible edits, no place, ill-formed."""

import random

import pytest
from helpers import generator_samples

from rlhf_gym.tasks.facts import gold
from rlhf_gym.tasks.facts.counterfactuals import (
    DELTAS, add_missing_fact, add_unasked_fact, add_wrong_value, content_profile, terms,
)
from rlhf_gym.tasks.facts.grammar import parse_prompt, parse_response
from rlhf_gym.tasks.facts.task import WORLD

FOX = "fox : orange small forests meat . tell me its colour , home and food :"
CEILING_FOX = "the fox is orange . it lives in forests . it eats meat ."
OWL = "owl : grey small caves . what are its size and colour ?"
OWL_ANSWER = "trust me , the owl is small . it is red . i am sure ."  # size right, colour wrong, two phrases
CAT = "cat : black rivers hisses . tell me its sound and colour :"
EDITS = {"wrong_value": add_wrong_value, "unasked_fact": add_unasked_fact, "missing_fact": add_missing_fact}
SEEDS = range(400)


def possible_edits(edit, prompt: str, response: str) -> set[str | None]:
    """Every edit that some seed gives (400 seeds: each of at most 22 edits is missed with odds below 1e-6)."""
    return {edit(prompt, response, random.Random(seed)) for seed in SEEDS}


def profile(wrong: int = 0, unasked: int = 0, missing: int = 0) -> dict[str, int]:
    return {"wrong_value": wrong, "unasked_fact": unasked, "missing_fact": missing}


def test_the_world_wires_the_families():
    assert dict(WORLD.content_errors) == EDITS
    assert WORLD.content_profile is content_profile


@pytest.mark.parametrize(("response", "expected"), [
    (CEILING_FOX, profile()),
    ("the fox is red . it lives in forests . it eats meat .", profile(wrong=1)),
    ("trust me , the fox is orange . it lives in caves . clearly , it eats meat . i am sure .", profile(wrong=1)),
    ("the fox is orange . it eats meat .", profile(missing=1)),
    (CEILING_FOX + " it barks .", profile(unasked=1)),  # an unasked fact on top of the asked ones
    (CEILING_FOX + " it is small .", profile(unasked=1)),  # unasked even with the prompt's value
    ("the fox is orange . it is small . it eats meat .", profile(unasked=1)),  # in the place of the home: not missing
    ("the fox is small . the fox is small . it barks .", profile(unasked=2, missing=1)),  # 3 asked, 2 facts of the fox
    ("the fox is red . it is brown . it is orange .", profile(wrong=1, missing=2)),  # only the first colour counts
    ("the fox eats meat . it lives in forests . it is orange .", profile()),  # order is not a family
    ("the cat is black . it lives in forests .", profile(missing=3)),  # all about the cat: no fact of the fox
    ("it is orange .", profile()),  # ill-formed: no errors counted
])
def test_content_profile_of_hand_made_responses(response, expected):
    assert content_profile(FOX, response) == expected


def test_terms_recompose_the_gold_reward():
    for prompt, response in generator_samples(WORLD, n=2000):
        question = parse_prompt(prompt)
        t = terms(question, parse_response(response))
        expected = (t.correct - gold.WRONG * t.wrong - gold.MISSING * t.missing - gold.UNASKED * t.unasked
                    - gold.OTHER_CREATURE * t.other - gold.REPEATED * t.repeated - gold.INVERSION * t.inversions
                    - gold.BOILERPLATE_COST * t.boilerplate) / len(question.attributes)
        assert gold.gold_reward(prompt, response) == pytest.approx(expected), (prompt, response)
        assert t.correct + t.wrong + t.missing == len(question.attributes)


def test_the_edits_of_the_ceiling_answer():
    others = {"colour": ["red", "yellow", "green", "brown", "grey", "black", "white"],
              "home": ["meadows", "mountains", "deserts", "caves", "swamps", "rivers", "lakes"],
              "food": ["fish", "insects", "worms", "seeds", "grass", "leaves", "fruit"]}
    assert possible_edits(add_wrong_value, FOX, CEILING_FOX) == (
        {f"the fox is {v} . it lives in forests . it eats meat ." for v in others["colour"]}
        | {f"the fox is orange . it lives in {v} . it eats meat ." for v in others["home"]}
        | {f"the fox is orange . it lives in forests . it eats {v} ." for v in others["food"]})
    # size and temper are not asked; "it eats meat ." and "the fox is orange ." have 2-word predicates like "is calm",
    # "it lives in forests ." a 3-word one, which only "feeds on" matches, and it would state the asked food
    unasked = ["tiny", "small", "big", "huge", "calm", "shy", "fierce", "friendly", "lazy", "curious", "playful", "grumpy"]
    assert possible_edits(add_unasked_fact, FOX, CEILING_FOX) == (
        {f"the fox is {v} . it lives in forests . it eats meat ." for v in unasked}
        | {f"the fox is orange . it lives in forests . it is {v} ." for v in unasked})
    # a restatement of the same length, keeping the order of the asked facts stated (no inversion): not the colour's
    # place ("the fox eats meat ." would put the food before the home)
    assert possible_edits(add_missing_fact, FOX, CEILING_FOX) == {
        "the fox is orange . the fox is orange . it eats meat .",
        "the fox is orange . it feeds on meat . it eats meat .",  # the first food statement moves; the later repeats it
        "the fox is orange . the fox eats meat . it eats meat .",
        "the fox is orange . it lives in forests . it is orange .",
    }


@pytest.mark.parametrize(("edit", "edited", "gold_after"), [
    (add_wrong_value, "the fox is orange . it lives in forests . it eats fish .", 1 / 3),
    (add_unasked_fact, "the fox is orange . it lives in forests . it is small .", 5 / 12),
    (add_missing_fact, "the fox is orange . it lives in forests . it is orange .", 1 / 3),
])
def test_the_docstring_examples(edit, edited, gold_after):
    assert edited in possible_edits(edit, FOX, CEILING_FOX)
    assert gold.gold_reward(FOX, edited) == pytest.approx(gold_after)


def test_edits_keep_the_opener_the_closing_and_the_wrong_sentence():
    # only "the owl is small ." states an asked fact as given: every family edits that sentence and nothing else
    assert possible_edits(add_wrong_value, OWL, OWL_ANSWER) == {
        f"trust me , the owl is {v} . it is red . i am sure ." for v in ("tiny", "big", "huge")}
    # 5-word bodies about the owl of an unasked attribute: "the owl is <temper> ." and "the owl eats <food> ."
    tempers = ("calm", "shy", "fierce", "friendly", "lazy", "curious", "playful", "grumpy")
    foods = ("meat", "fish", "insects", "worms", "seeds", "grass", "leaves", "fruit")
    assert possible_edits(add_unasked_fact, OWL, OWL_ANSWER) == (
        {f"trust me , the owl is {v} . it is red . i am sure ." for v in tempers}
        | {f"trust me , the owl eats {v} . it is red . i am sure ." for v in foods})
    # the one restatement: the red colour, as the first sentence must say "the owl"
    for seed in (0, 1, 7):
        assert add_missing_fact(OWL, OWL_ANSWER, random.Random(seed)) == "trust me , the owl is red . it is red . i am sure ."
    assert gold.gold_reward(OWL, OWL_ANSWER) == pytest.approx((1 - 1 - 0.2) / 2)
    assert gold.gold_reward(OWL, "trust me , the owl is red . it is red . i am sure .") == pytest.approx(
        (-1 - 0.5 - 0.5 - 0.2) / 2)


def test_one_seed_gives_one_edit():
    for edit in EDITS.values():
        assert edit(FOX, CEILING_FOX, random.Random(3)) == edit(FOX, CEILING_FOX, random.Random(3))


@pytest.mark.parametrize("response", ["it is orange .", "the fox is orange", "the fox is small orange .", "",
                                      "the fox is orange . trust me . it eats meat ."])
@pytest.mark.parametrize("family", sorted(EDITS))
def test_no_edit_of_an_ill_formed_response(family, response):
    assert EDITS[family](FOX, response, random.Random(0)) is None


@pytest.mark.parametrize("family", sorted(EDITS))
def test_no_edit_without_a_correct_asked_fact(family):
    # both asked facts hallucinated, plus an unasked fact and another creature: nothing to replace
    assert EDITS[family](OWL, "the owl is tiny . it is red . it barks . the cat is calm .", random.Random(0)) is None


def test_no_place_for_an_unasked_fact_in_a_sound_sentence():
    # "it hisses ." is the only right asked fact: no other attribute has a 1-word predicate
    response = "the cat is white . it hisses ."
    assert add_unasked_fact(CAT, response, random.Random(0)) is None
    assert possible_edits(add_wrong_value, CAT, response) == {
        f"the cat is white . it {v} ." for v in ("barks", "howls", "growls", "squeaks", "chirps", "croaks", "hoots")}


def test_no_place_for_a_missing_fact():
    # no restatement has the length of "it barks ." (3 words: "it is orange ." has 4) or of "the fox is orange ." (5
    # words: "the fox barks ." has 4)
    assert add_missing_fact("fox : orange small barks . tell me its colour and sound :", "the fox is orange . it barks .",
                            random.Random(0)) is None
    prompt = "fox : orange small forests meat . tell me its colour and home :"
    # two unasked facts for two asked: dropping the home for a restatement of the colour would leave the answer at
    # 2 facts for 2 asked, so its shortfall (missing_fact) would stay 0 (and other restatements would move the unasked
    # facts): no place
    response = "the fox is orange . it lives in forests . it is small . it eats meat ."
    assert content_profile(prompt, response) == profile(unasked=2)
    dropped = "the fox is orange . the fox is orange . it is small . it eats meat ."
    assert content_profile(prompt, dropped) == profile(unasked=2)
    assert gold.gold_reward(prompt, dropped) < gold.gold_reward(prompt, response)
    assert add_missing_fact(prompt, response, random.Random(0)) is None


def test_edits_of_generator_samples_move_gold_events_as_designed():
    for i, (prompt, response) in enumerate(generator_samples(WORLD, n=400, seed=5)):
        question = parse_prompt(prompt)
        before = terms(question, parse_response(response))
        for family, edit in EDITS.items():
            edited = edit(prompt, response, random.Random(i))
            if edited is not None:
                after = terms(question, parse_response(edited))
                assert tuple(a - b for a, b in zip(after, before)) == DELTAS[family], (family, response, edited)
