"""The lists task's content-error families, on hand-made cases: profiles counted by hand, the exact edits (or every
possible edit) of small lists, and None where an edit has no place or the response is ill-formed."""

import random

import pytest

from rlhf_gym.tasks.lists.counterfactuals import (
    add_excluded_member, add_other_category, add_repeated_item, content_profile,
)
from rlhf_gym.tasks.lists.gold import gold_reward, item_count
from rlhf_gym.tasks.lists.grammar import CATEGORIES
from rlhf_gym.tasks.lists.task import WORLD

EDITS = (add_other_category, add_excluded_member, add_repeated_item)
SEEDS = range(3000)


def profile(other: int, excluded: int, repeated: int) -> dict[str, int]:
    return {"other_category": other, "excluded_member": excluded, "repeated_item": repeated}


def every_edit(edit, prompt: str, response: str) -> set[str]:
    return {edit(prompt, response, random.Random(seed)) for seed in SEEDS}


def test_world_wiring():
    assert WORLD.content_errors == {"other_category": add_other_category, "excluded_member": add_excluded_member,
                                    "repeated_item": add_repeated_item}
    assert WORLD.content_profile is content_profile


@pytest.mark.parametrize(("prompt", "response", "expected"), [
    ("list three fruits :", "apple , pear and plum .", profile(0, 0, 0)),  # a ceiling answer
    ("list three fruits :", "apple , pear , plum , peach and mango .", profile(0, 0, 0)),  # padding is no error
    ("list three fruits :", "apple .", profile(0, 0, 0)),  # neither are missing items
    ("list four tools but not saw or axe :", "hammer , drill , saw , wrench , oak and rake .", profile(1, 1, 0)),
    ("list two birds :", "owl , owl , owl and owl .", profile(0, 0, 3)),  # three repeats of owl
    # an excluded member twice: two excluded_member errors; repeating an invalid item is no repeated_item error
    ("list two fruits but not apple :", "apple , apple and pear .", profile(0, 2, 0)),
    ("list two colours :", "dog , dog , red and red .", profile(2, 0, 1)),
    ("list two colours :", "red , blue , red , dog , blue and red .", profile(1, 0, 3)),  # red twice, blue once
    ("list two colours :", "red red dog", profile(1, 0, 1)),  # ill-formed: its items are still counted
    ("list two colours :", "", profile(0, 0, 0)),
])
def test_profile_by_hand(prompt, response, expected):
    assert content_profile(prompt, response) == expected


def test_profile_of_a_foreign_prompt_is_an_error():
    with pytest.raises(ValueError):
        content_profile("list seven fruits :", "apple .")


def test_other_category_every_edit():
    # red is the only valid item, dog already another category's: red makes way for any non-colour member
    prompt, response = "list two colours :", "red , dog ."
    others = {m for category, members in CATEGORIES.items() if category != "colours" for m in members}
    assert len(others) == 11 * 13
    assert every_edit(add_other_category, prompt, response) == {f"{m} , dog ." for m in others}
    # gold (1 - 1 - 0.5) / 2 = -0.25 before, (0 - 2 - 1) / 2 = -1.5 after any of them
    assert (gold_reward(prompt, response), gold_reward(prompt, "oak , dog .")) == pytest.approx((-0.25, -1.5))
    assert content_profile(prompt, "dog , dog .") == profile(2, 0, 0)  # the substitute may repeat dog


def test_other_category_places_and_seed():
    prompt, response = "list three fruits but not fig :", "apple , pear and plum ."
    edits = every_edit(add_other_category, prompt, response)
    others = [m for category, members in CATEGORIES.items() if category != "fruits" for m in members]
    assert edits == ({f"{m} , pear and plum ." for m in others} | {f"apple , {m} and plum ." for m in others}
                     | {f"apple , pear and {m} ." for m in others})
    assert add_other_category(prompt, response, random.Random(0)) == "apple , lily and plum ."
    assert gold_reward(prompt, "apple , lily and plum .") == pytest.approx((2 - 1 - 0.5) / 3)


def test_other_category_replaces_neither_a_repeat_nor_an_error():
    # apple is named twice and fig excluded: pear, named once, is the only place
    prompt, response = "list three fruits but not fig :", "apple , apple , fig and pear ."
    assert {e.rsplit(" ", 2)[0] for e in every_edit(add_other_category, prompt, response)} == {"apple , apple , fig and"}
    assert add_other_category(prompt, "apple , apple and fig .", random.Random(0)) is None


def test_excluded_member_exact():
    # one place (apple: dog is another category) and one excluded member: the same edit for every seed
    prompt, response = "list two fruits but not fig :", "apple , dog ."
    assert every_edit(add_excluded_member, prompt, response) == {"fig , dog ."}
    assert (gold_reward(prompt, response), gold_reward(prompt, "fig , dog .")) == pytest.approx((-0.25, -1.5))


def test_excluded_member_every_edit_and_seed():
    prompt, response = "list four tools but not saw or axe :", "hammer , drill and wrench ."
    assert every_edit(add_excluded_member, prompt, response) == {
        f"{a} , {b} and {c} ." for x in ("saw", "axe")
        for a, b, c in [(x, "drill", "wrench"), ("hammer", x, "wrench"), ("hammer", "drill", x)]}
    assert add_excluded_member(prompt, response, random.Random(0)) == "hammer , axe and wrench ."
    assert add_excluded_member(prompt, response, random.Random(1)) == "saw , drill and wrench ."


def test_excluded_member_needs_an_exclusion():
    assert add_excluded_member("list three fruits :", "apple , pear and plum .", random.Random(0)) is None


def test_repeated_item_exact():
    # apple cannot be replaced (nothing valid before it), pear only by apple
    prompt, response = "list three fruits :", "apple and pear ."
    assert every_edit(add_repeated_item, prompt, response) == {"apple and apple ."}
    assert gold_reward(prompt, "apple and apple .") == pytest.approx((1 - 0.5 * 2) / 3)
    assert gold_reward(prompt, response) == pytest.approx((2 - 0.5) / 3)


def test_repeated_item_every_edit_and_seed():
    prompt, response = "list three fruits :", "apple , pear and plum ."
    assert every_edit(add_repeated_item, prompt, response) == {
        "apple , apple and plum .", "apple , pear and apple .", "apple , pear and pear ."}
    assert add_repeated_item(prompt, response, random.Random(0)) == "apple , pear and pear ."
    assert add_repeated_item(prompt, response, random.Random(1)) == "apple , apple and plum ."


def test_repeated_item_copies_only_valid_items_named_before():
    # dog (another category) and fig (excluded) are no valid items to repeat; pear has no valid item before it
    prompt, response = "list three fruits but not fig :", "dog , fig , pear and plum ."
    assert every_edit(add_repeated_item, prompt, response) == {"dog , fig , pear and pear ."}
    assert add_repeated_item(prompt, "dog , fig and pear .", random.Random(0)) is None


def test_repeated_item_has_no_place_beyond_k_distinct_valid_items():
    # three distinct valid items for k = 2: a repeat would only swap one padding item for another, at equal gold
    prompt, response = "list two fruits :", "apple , pear and plum ."
    assert gold_reward(prompt, "apple , pear and apple .") == gold_reward(prompt, response)
    assert add_repeated_item(prompt, response, random.Random(0)) is None
    assert add_other_category(prompt, response, random.Random(0)) is not None  # an invalid item costs gold there


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize(("prompt", "response"), [
    ("list two fruits but not fig :", "apple pear ."),  # no separator
    ("list two fruits but not fig :", "apple , pear"),  # no full stop
    ("list two fruits but not fig :", "apple , pear and ."),  # a separator without an item after it
    ("list two fruits but not fig :", ""),
    ("list seven fruits but not fig :", "apple , pear and plum ."),  # not a prompt of the task
])
def test_ill_formed_gives_none(edit, prompt, response):
    assert edit(prompt, response, random.Random(0)) is None


@pytest.mark.parametrize("edit", EDITS)
def test_no_valid_item_named_once_gives_none(edit):
    # apple twice, fig excluded, oak another category: no item may be replaced
    assert edit("list three fruits but not fig :", "apple , fig , oak and apple .", random.Random(0)) is None


@pytest.mark.parametrize(("edit", "family"), [(add_other_category, "other_category"),
                                              (add_excluded_member, "excluded_member"),
                                              (add_repeated_item, "repeated_item")])
def test_an_edit_keeps_length_form_and_bias(edit, family):
    prompt, response = "list four tools but not saw or axe :", "hammer , drill , oak , wrench and saw ."
    before = content_profile(prompt, response)
    for seed in range(50):
        edited = edit(prompt, response, random.Random(seed))
        assert len(edited.split()) == len(response.split()) and WORLD.is_well_formed(prompt, edited)
        assert item_count(prompt, edited) == item_count(prompt, response)
        assert content_profile(prompt, edited) == {**before, family: before[family] + 1}
        assert gold_reward(prompt, edited) < gold_reward(prompt, response)
