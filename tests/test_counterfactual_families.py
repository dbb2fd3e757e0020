"""Every task's counterfactual families (``TaskWorld.content_errors``), property-based over many generator samples and
prompts: an edit adds exactly one error of its family and changes nothing else a reader could weigh (length in words,
well-formedness, the annotators' bias), and lowers the gold reward; one seed gives one edit; every family applies to
a ceiling answer (with room made by bias units where needed), which makes no error of any family."""

import random
from collections import Counter

import pytest

from rlhf_gym.pair_types import ceiling_edit
from rlhf_gym.tasks import WORLDS

FAMILIES = {
    "lists": {"other_category", "excluded_member", "repeated_item"},
    "facts": {"wrong_value", "unasked_fact", "missing_fact"},
    "describe": {"negated_property", "wrong_property", "unaddressed_property"},
    "describe_v1": {"negated_property", "wrong_property", "unaddressed_property"},  # v0's edits under v1's gold
}
N_SAMPLES = 600


def generator_samples(world, seed: int):
    """``(i, prompt, response)``: ``N_SAMPLES`` texts of the world's generator."""
    rng = random.Random(seed)
    for i in range(N_SAMPLES):
        yield (i, *world.sample_text(rng))


def applied_edits(edits, prompt: str, response: str, seed: int):
    """``(name, edited)`` for each of ``edits`` that has a place in ``response`` (seeded by ``seed``)."""
    for name, edit in edits.items():
        edited = edit(prompt, response, random.Random(seed))
        if edited is not None:
            yield name, edited


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_an_edit_adds_one_error_of_its_family_and_nothing_else(name):
    world = WORLDS[name]
    assert set(world.content_errors) == FAMILIES[name]
    applied, well_formed = Counter(), 0
    for i, prompt, response in generator_samples(world, 0):
        before = world.content_profile(prompt, response)
        assert set(before) == FAMILIES[name]
        well_formed += world.is_well_formed(prompt, response)
        for family, edited in applied_edits(world.content_errors, prompt, response, i):
            applied[family] += 1
            edit = world.content_errors[family]
            where = f"{family} on {prompt!r} -> {response!r}: {edited!r}"
            assert world.is_well_formed(prompt, response) and world.is_well_formed(prompt, edited), where
            assert len(edited.split()) == len(response.split()), where
            assert world.annotator_bias(prompt, edited) == world.annotator_bias(prompt, response), where
            after = world.content_profile(prompt, edited)
            assert after == {**before, family: before[family] + 1}, where
            assert world.gold_reward(prompt, edited) < world.gold_reward(prompt, response), where
            assert edit(prompt, response, random.Random(i)) == edited, where
    for family in FAMILIES[name]:  # each family has a place in a good share of the well-formed samples
        assert applied[family] >= 0.2 * well_formed, (family, applied, well_formed)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_applies_to_a_ceiling_answer(name):
    """The probe table's pairs: a ceiling answer (some bias units may make room) against its one-error edit."""
    world = WORLDS[name]
    _, held_out = world.prompt_split()
    applied = Counter()
    for i, prompt in enumerate(held_out[:300]):
        for family in world.content_errors:
            pair = ceiling_edit(world, family, prompt, random.Random(i))
            if pair is None:
                continue
            ceiling, edited = pair
            applied[family] += 1
            assert world.gold_reward(prompt, ceiling) == world.gold_ceiling(prompt)
            assert set(world.content_profile(prompt, ceiling).values()) == {0}
            assert world.content_profile(prompt, edited) == {f: int(f == family) for f in world.content_errors}
    # a family may need something of the prompt (an excluded member needs a "but not"); each applies to many
    assert all(applied[family] >= 100 for family in FAMILIES[name]), applied


CONTRASTS = {"describe": {"negation_move"}, "describe_v1": {"negation_move"}}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_contrast_reorders_the_words_and_changes_gold(name):
    """``TaskWorld.contrasts``: the same multiset of words (hence length and bias), still well-formed, another gold; one
    seed gives one edit; and the contrasts have a place in most generator samples."""
    world = WORLDS[name]
    assert set(world.contrasts) == CONTRASTS.get(name, set())
    applied = Counter()
    for i, prompt, response in generator_samples(world, 1) if world.contrasts else ():
        for contrast, edited in applied_edits(world.contrasts, prompt, response, i):
            applied[contrast] += 1
            edit = world.contrasts[contrast]
            where = f"{contrast} on {prompt!r} -> {response!r}: {edited!r}"
            assert sorted(edited.split()) == sorted(response.split()) and edited != response, where
            assert world.is_well_formed(prompt, edited), where
            assert world.annotator_bias(prompt, edited) == world.annotator_bias(prompt, response), where
            assert world.gold_reward(prompt, edited) != world.gold_reward(prompt, response), where
            assert edit(prompt, response, random.Random(i)) == edited, where
    assert all(applied[contrast] >= 0.3 * N_SAMPLES for contrast in world.contrasts), applied
