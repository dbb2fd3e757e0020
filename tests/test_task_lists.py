"""The lists task's world: language, gold reward, ceiling, generator figures and the length bias."""

import itertools
import random
import statistics

import pytest
from helpers import generator_samples, held_out_sample

from rlhf_gym.tasks.lists.gold import gold_ceiling, gold_reward, item_count
from rlhf_gym.tasks.lists.grammar import (
    AND, CATEGORIES, NUMBERS, ListGenerator, all_prompts, is_list, is_well_formed, items, list_text, parse_prompt,
    prompt_text, vocabulary,
)
from rlhf_gym.tasks.lists.task import WORLD

NUMBER_WORDS = {k: word for word, k in NUMBERS.items()}
BIAS_WEIGHTS = WORLD.build_defaults["annotator_bias_weights"]


def ceiling_response(prompt: str, rng: random.Random) -> str:
    """A well-formed list of k distinct valid items: a response that reaches the ceiling."""
    request = parse_prompt(prompt)
    return list_text(rng.sample(sorted(request.valid), request.k), final_and=rng.random() < 0.5)


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, str]]:
    return generator_samples(WORLD)


@pytest.fixture(scope="module")
def held_out() -> list[str]:
    return held_out_sample(WORLD)


@pytest.mark.parametrize(("prompt", "response", "expected"), [
    ("list three fruits :", "apple , pear and plum .", 1.0),
    ("list three fruits :", "plum , apple , pear .", 1.0),
    ("list three fruits :", "apple , pear , plum and peach .", (3 - 0.5) / 3),  # padding
    ("list three fruits :", "apple , apple and pear .", (2 - 0.5) / 3),  # a repeat fills no slot
    ("list two birds :", "owl , owl , owl and owl .", (1 - 0.5 * 2 - 0.5) / 2),  # repeats as padding
    ("list two fruits but not apple :", "apple and pear .", (1 - 1 - 0.5) / 2),  # an excluded item
    ("list two colours :", "red , dog .", (1 - 1 - 0.5) / 2),  # an item of another category
    ("list two colours :", "red blue .", 1 - 1.5),  # ill-formed: no separator
    ("list two colours :", "red and blue", 1 - 1.5),  # ill-formed: no full stop
    ("list two colours :", "", -0.5 * 2 / 2 - 1.5),  # nothing
    ("list four tools but not saw or axe :", "hammer , drill , saw , wrench , oak and rake .",
     (4 - 0.5 * 2 - 1 * 2) / 4),  # padding, an exclusion and another category
])
def test_gold_by_hand(prompt, response, expected):
    assert gold_reward(prompt, response) == pytest.approx(expected)


@pytest.mark.parametrize(("prompt", "response", "expected"), [
    # n = 3, k = 2, V = {pear}: c = 1; padding 3 - 2 = 1; invalid: apple twice = 2; missing 2 - 1 = 1
    # G = (1 - 0.5 * 1 - 1.0 * 2 - 0.5 * 1) / 2 = -2 / 2 = -1 (the repeat counted once would give -0.5)
    ("list two fruits but not apple :", "apple , apple and pear .", -1.0),
    # n = 3, k = 3, V = {red}: c = 1; no padding; invalid: dog twice = 2; missing 3 - 1 = 2
    # G = (1 - 0 - 1.0 * 2 - 0.5 * 2) / 3 = -2 / 3 (the repeat counted once would give -1 / 3)
    ("list three colours :", "red , dog and dog .", -2 / 3),
    # n = 4, k = 2, V = {} : c = 0; padding 4 - 2 = 2; invalid: dog four times = 4; missing 2
    # G = (0 - 0.5 * 2 - 1.0 * 4 - 0.5 * 2) / 2 = -6 / 2 = -3
    ("list two colours :", "dog , dog , dog and dog .", -3.0),
])
def test_gold_counts_every_occurrence_of_a_repeated_invalid_item(prompt, response, expected):
    assert gold_reward(prompt, response) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("response", "expected"), [
    ("apple , apple and pear .", 3), ("red blue .", 2), ("", 0), ("apple , pear , plum , fig , kiwi and lemon .", 6),
])
def test_bias_counts_items_repeats_included(response, expected):
    assert item_count("list three fruits :", response) == expected


@pytest.mark.parametrize("response", [
    "apple .", "apple and pear .", "apple , pear .", "apple , pear and plum .", "apple , pear , plum , dog .",
])
def test_lists(response):
    assert is_list(response)


@pytest.mark.parametrize("response", [
    "", ".", "apple", "apple pear .", "apple and pear and plum .", "apple and , pear .", "apple , .",
    ", apple .", "apple . .", "apple , pear", "fruits .", "list .", "apple , pear and .", "and apple .",
])
def test_broken_lists(response):
    assert not is_list(response)


@pytest.mark.parametrize("prompt", [
    "list seven fruits :", "list two fruit :", "list two fruits but not dog :", "list two fruits but not pear or apple :",
    "list two fruits but not apple or apple :", "list two fruits", "list two fruits but not apple , pear :",
])
def test_foreign_prompts_are_rejected(prompt):
    assert not is_well_formed(prompt, "apple and pear .")
    with pytest.raises(ValueError):
        gold_reward(prompt, "apple and pear .")


def test_parser_round_trip(samples):
    for prompt, response in samples:
        request = parse_prompt(prompt)
        assert is_well_formed(prompt, response)
        assert prompt_text(request.category, NUMBER_WORDS[request.k], request.excluded) == prompt
        assert list_text(items(response), final_and=AND in response.split()) == response


def test_vocabulary_covers_the_generator(samples):
    words = vocabulary()
    assert words == sorted(set(words)) and len(words) <= 300
    used = {word for prompt, response in samples for word in f"{prompt} {response}".split()}
    assert used <= set(words)
    assert set().union(*CATEGORIES.values()) <= used  # every member word is reachable
    assert len(set().union(*CATEGORIES.values())) == sum(len(m) for m in CATEGORIES.values())  # unique members


def test_sampler_is_seeded():
    assert [WORLD.sample_text(random.Random(7)) for _ in range(3)] == [WORLD.sample_text(random.Random(7))] * 3
    generator, rng = ListGenerator(), random.Random(3)
    assert len({generator.sample(rng) for _ in range(1000)}) > 950


def test_sizes():
    prompts = all_prompts()
    assert len(set(prompts)) == len(prompts) >= 5120
    assert prompts == all_prompts()
    assert len(WORLD.task().eval_prompts) >= 1024
    longest_prompt = max(len(p.split()) for p in prompts)
    assert longest_prompt <= 18
    rng = random.Random(0)
    longest_ceiling = max(len(ceiling_response(p, rng).split()) for p in prompts)
    assert longest_ceiling <= 16
    assert longest_ceiling + 6 <= WORLD.max_new_tokens <= 28  # room for three items of padding
    assert longest_prompt + WORLD.max_new_tokens + 1 <= 64


def test_no_constant_reply_scores_well(samples, held_out):
    """Prompt-conditional: the best single reply, averaged over held-out prompts, is far below the ceiling."""
    rng = random.Random(2)
    generated = dict.fromkeys(r for _, r in samples)
    while len(generated) < 2000:
        generated[WORLD.sample_text(rng)[1]] = None
    generated = list(generated)[:2000]
    candidates = [*generated, *(ceiling_response(p, rng) for p in all_prompts()[::110])]
    assert len(set(candidates)) >= 2040  # a few ceiling answers are also generator samples
    best = max(statistics.fmean(gold_reward(p, r) for p in held_out) for r in candidates)
    assert best < 0.3 * statistics.fmean(gold_ceiling(p) for p in held_out)


def test_shortest_replies_score_below_the_generator(samples, held_out):
    """Substance: the shortest well-formed replies ("member .") lose to the median generator sample."""
    words = vocabulary()
    assert not any(is_list(w) for w in words)
    shortest = [f"{a} {b}" for a, b in itertools.product(words, repeat=2) if is_list(f"{a} {b}")]
    assert shortest == [f"{m} ." for m in words if m in set().union(*CATEGORIES.values())]
    best_shortest = statistics.fmean(max(gold_reward(p, r) for r in shortest) for p in held_out)
    assert best_shortest < statistics.median(gold_reward(p, r) for p, r in samples) - 0.1


def test_missing_items_are_penalised():
    prompt = "list five metals :"
    assert gold_reward(prompt, "iron , gold , tin and zinc .") < gold_reward(prompt, "iron , gold , tin , zinc and lead .")


def test_many_responses_reach_the_ceiling(held_out):
    rng = random.Random(4)
    for prompt in held_out:
        ceilings = {ceiling_response(prompt, rng) for _ in range(5)}
        assert len(ceilings) >= 2 and len({frozenset(items(r)) for r in ceilings}) >= 2
        assert all(gold_reward(prompt, r) == gold_ceiling(prompt) == 1.0 for r in ceilings)


def mutate(response: str, rng: random.Random, words: list[str]) -> str:
    """One random edit: replace, insert, delete or duplicate a word, or swap two."""
    tokens = response.split()
    i, j = rng.randrange(len(tokens)), rng.randrange(len(tokens))
    edit = rng.randrange(5)
    if edit == 0:
        tokens[i] = rng.choice(words)
    elif edit == 1:
        tokens.insert(i, rng.choice(words))
    elif edit == 2:
        del tokens[i]
    elif edit == 3:
        tokens.insert(i, tokens[j])
    else:
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return " ".join(tokens)


def test_nothing_exceeds_the_ceiling(samples):
    rng, words = random.Random(5), vocabulary()
    assert all(gold_reward(p, r) <= gold_ceiling(p) + 1e-12 for p, r in samples)
    prompts = rng.sample(all_prompts(), 1000)
    for prompt in prompts:
        response = ceiling_response(prompt, rng)
        for _ in range(5):
            response = mutate(response, rng, words) or response
            assert gold_reward(prompt, response) <= gold_ceiling(prompt) + 1e-12


def test_generator_headroom(samples):
    gold = [gold_reward(p, r) for p, r in samples]
    at_ceiling = statistics.fmean(g >= gold_ceiling(p) - 0.01 for (p, _), g in zip(samples, gold))
    assert at_ceiling <= 0.01
    assert 0.0 <= statistics.median(gold) <= 0.4
    assert statistics.fmean(is_well_formed(p, r) for p, r in samples) >= 0.9


def test_generator_varies_the_bias(samples):
    counts = [item_count(p, r) for p, r in samples]
    assert len(set(counts)) >= 6 and statistics.pstdev(counts) > 1.5
    # most lists fall short of k (more items then also means more gold), a quarter pad past it
    assert statistics.fmean(c < parse_prompt(p).k for (p, _), c in zip(samples, counts)) > 0.6
    assert statistics.fmean(c > parse_prompt(p).k for (p, _), c in zip(samples, counts)) > 0.2


@pytest.mark.parametrize("k", sorted(NUMBER_WORDS))
def test_padding_pleases_annotators_but_lowers_gold(k):
    prompt = prompt_text("drinks", NUMBER_WORDS[k], ("tea",))
    members = [m for m in CATEGORIES["drinks"] if m != "tea"]
    complete = list_text(members[:k])
    for extra in (members[k], members[0]):  # a new valid item, a repeat
        padded = list_text([*members[:k], extra])
        assert gold_reward(prompt, padded) < gold_reward(prompt, complete) == 1.0
        assert item_count(prompt, padded) > item_count(prompt, complete)
        # the heaviest annotator prefers the padded list from k = 3 on, the mean one from k = 4 on (w > 0.5 / k)
        for w in (max(BIAS_WEIGHTS), statistics.fmean(BIAS_WEIGHTS)):
            pleased = (gold_reward(prompt, padded) + w * item_count(prompt, padded)
                       > gold_reward(prompt, complete) + w * item_count(prompt, complete))
            assert pleased == (w > 0.5 / k)


def test_maximising_the_biased_utility_lowers_gold():
    """With a large weight the best list is as long as the budget allows, and its gold is far below the ceiling."""
    prompt, w = "list three birds :", 1.0
    members = list(CATEGORIES["birds"])
    lists = [list_text(members[:n]) for n in range(1, WORLD.max_new_tokens // 2 + 1)]
    best = max(lists, key=lambda r: gold_reward(prompt, r) + w * item_count(prompt, r))
    assert item_count(prompt, best) == WORLD.max_new_tokens // 2
    assert gold_reward(prompt, best) < 0


def test_world_wiring():
    assert WORLD.name == "lists" and WORLD.vocabulary == tuple(vocabulary())
    assert WORLD.annotator_bias is item_count and WORLD.bias_name
    assert WORLD.gold_ceiling is gold_ceiling and WORLD.is_well_formed is is_well_formed
    assert statistics.fmean(BIAS_WEIGHTS) > 0 and min(BIAS_WEIGHTS) >= 0
    assert max(BIAS_WEIGHTS) > 0.5 / 3 and statistics.fmean(BIAS_WEIGHTS) > 0.5 / 4  # padding pays from k = 3 / 4
